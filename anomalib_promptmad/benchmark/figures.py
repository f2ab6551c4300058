# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Figures of a benchmark run: a bar chart per metric and side-by-side anomaly maps.

Drawn with matplotlib's ``Agg`` backend (files only, no display needed), each written atomically.

* ``charts/<metric>.png``: one panel per (dataset, setting); per category and for the mean, one bar
  per model, side by side.
* ``maps_<dataset>_<setting>.png``: one row per fixed test image (see
  :mod:`~anomalib_promptmad.benchmark.samples`); columns: image, ground truth, one heat map per model
  on a shared [0, 1] scale.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only; must precede pyplot (no display on servers and in CI)
import matplotlib.pyplot as plt
import numpy as np

from anomalib_promptmad.benchmark.metrics import QUALITY_METRICS
from anomalib_promptmad.benchmark.samples import MapSample, load_samples
from anomalib_promptmad.infrastructure.atomic_write import write_atomic

__all__ = ["bar_charts", "map_figures"]

_DPI = 110


def bar_charts(rows: Sequence[dict[str, Any]], models: Sequence[str], folder: Path) -> list[Path]:
    """One bar chart per quality metric.

    Args:
        rows: Report rows (:func:`~anomalib_promptmad.benchmark.report.build_rows`).
        models: Model names in legend order.
        folder: Where the PNG files go.

    Returns:
        The files written (none when there are no rows).
    """
    panels = list(dict.fromkeys((row["dataset"], row["setting"]) for row in rows))
    if not panels:
        return []
    colours = plt.get_cmap("tab10")
    written = []
    for metric in QUALITY_METRICS:
        figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False, layout="constrained")
        for axis, (dataset, setting) in zip(axes[:, 0], panels, strict=True):
            block = [r for r in rows if (r["dataset"], r["setting"]) == (dataset, setting)]
            categories = list(dict.fromkeys(r["category"] for r in block))
            present = [m for m in models if any(r["model"] == m for r in block)]
            width = 0.8 / max(1, len(present))
            for index, model in enumerate(present):
                values = {r["category"]: r[metric] for r in block if r["model"] == model}
                heights = [np.nan if values.get(c) is None else values[c] for c in categories]
                positions = np.arange(len(categories)) + (index - (len(present) - 1) / 2) * width
                bars = axis.bar(positions, heights, width, label=model, color=colours(models.index(model) % 10))
                axis.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
            axis.set_xticks(np.arange(len(categories)), categories)
            axis.set_ylim(0, 1.08)
            axis.set_ylabel(metric)
            axis.set_title(f"{dataset}, {setting}", fontsize=10)
            axis.grid(axis="y", alpha=0.3)
            axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.suptitle(metric, fontsize=11)
        written.append(_save(figure, folder / f"{metric}.png"))
    return written


def map_figures(results: Sequence[dict[str, Any]], models: Sequence[str], output_dir: Path) -> list[Path]:
    """One side-by-side anomaly-map figure per (dataset, setting).

    Args:
        results: Loaded ``result.json`` files (their ``maps.npz`` lie beside them).
        models: Model names in column order.
        output_dir: Run folder (the job folders are ``output_dir/jobs/<id>``).

    Returns:
        The files written.
    """
    panels: dict[tuple[str, str], dict[str, dict[str, MapSample]]] = {}
    for result in results:
        job = result["job"]
        samples = load_samples(output_dir / "jobs" / job["id"] / result["samples_file"])
        by_model = panels.setdefault((job["dataset"], job["setting"]), {})
        by_model.setdefault(job["model"], {}).update({s.image_path: s for s in samples})
    written = []
    for (dataset, setting), by_model in panels.items():
        present = [m for m in models if m in by_model]
        references: dict[str, MapSample] = {}
        for model in present:
            for path, sample in by_model[model].items():
                references.setdefault(path, sample)
        if not references:
            continue
        order = sorted(references, key=lambda p: (references[p].category, p))
        columns = 2 + len(present)
        figure, axes = plt.subplots(
            len(order),
            columns,
            figsize=(1.9 * columns + 0.6, 1.9 * len(order) + 0.4),
            squeeze=False,
            layout="constrained",
        )
        image = None
        for row, path in enumerate(order):
            reference = references[path]
            axes[row, 0].imshow(reference.image)
            axes[row, 0].set_ylabel(f"{reference.category}\n{Path(path).parent.name}/{Path(path).name}", fontsize=7)
            axes[row, 1].imshow(reference.mask, cmap="gray", vmin=0, vmax=1)
            for column, model in enumerate(present, start=2):
                sample = by_model[model].get(path)
                axis = axes[row, column]
                if sample is None:
                    axis.text(0.5, 0.5, "n/a", ha="center", va="center", transform=axis.transAxes)
                    continue
                axis.imshow(sample.image)
                image = axis.imshow(np.clip(sample.anomaly_map, 0, 1), cmap="jet", alpha=0.55, vmin=0, vmax=1)
        for column, title in enumerate(["image", "ground truth", *present]):
            axes[0, column].set_title(title, fontsize=9)
        for axis in axes.flat:
            axis.set_xticks([])
            axis.set_yticks([])
        figure.suptitle(f"{dataset}, {setting}", fontsize=10)
        if image is not None:
            figure.colorbar(image, ax=axes[:, -1].tolist(), shrink=0.9, label="anomaly score (0.5 = threshold)")
        written.append(_save(figure, output_dir / f"maps_{_safe(dataset)}_{_safe(setting)}.png"))
    return written


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    plt.close(figure)
    return write_atomic(path, lambda file: file.write(buffer.getvalue()))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
