# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The metrics a benchmark reports, and where they come from.

Quality metrics come from :class:`~anomalib_promptmad.callbacks.PerCategoryMetrics` (threshold-free, on the
models' raw scores min-max normalised per category, so no model is favoured by anomalib's clamping);
cost metrics are measured by the job (:mod:`~anomalib_promptmad.benchmark.throughput`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["COST_METRICS", "QUALITY_METRICS", "quality_from_callback"]

# report name -> PerCategoryMetrics key
QUALITY_METRICS: dict[str, str] = {
    "image_AUROC": "image_AUROC",
    "image_AP": "image_AUPR",
    "pixel_AUROC": "pixel_AUROC",
    "pixel_AP": "pixel_AUPR",
    "AUPRO": "pixel_AUPRO",
    "image_F1Max": "image_F1Max",
}

# report name -> description (the column header of the Markdown table in brackets)
COST_METRICS: dict[str, str] = {
    "fit_s": "training wall time including validation, seconds (per_class mean row: sum over categories)",
    "images_per_s_b1": "inference images/s, batch 1 (model forward, eval, no_grad, after warm-up)",
    "images_per_s_b8": "inference images/s, batch 8",
    "peak_memory_mib": "peak resident memory of the job process, MiB (per_class mean row: max)",
}


def quality_from_callback(results: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float | None]]:
    """Per-category quality metrics from ``PerCategoryMetrics.results`` (the ``mean`` row dropped).

    Args:
        results: category -> PerCategoryMetrics key -> value.

    Returns:
        category -> report name -> value, ``None`` where undefined (e.g. no defective image).
    """
    out: dict[str, dict[str, float | None]] = {}
    for category, values in results.items():
        if category == "mean":
            continue
        row: dict[str, float | None] = {}
        for name, key in QUALITY_METRICS.items():
            value = values.get(key)
            row[name] = None if value is None or math.isnan(value) else float(value)
        out[category] = row
    return out
