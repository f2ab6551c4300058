# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Data for multi-class anomaly detection: datamodules, per-category metrics, synthetic anomalies, demo data.

Public names resolve lazily (PEP 562) so that ``import anomalib_promptmad.data.category`` or the demo
generator do not import anomalib.

Example:
    >>> from anomalib_promptmad.data import category_from_path
    >>> category_from_path("datasets/MVTecAD/bottle/test/good/000.png")
    'bottle'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AnomalySynthesizer",
    "MultiClassDataset",
    "MultiClassFolder",
    "MultiClassMVTecAD",
    "PerCategoryMetrics",
    "SyntheticAnomalyDataset",
    "category_from_path",
    "generate_demo_dataset",
]

_LAZY_EXPORTS: dict[str, str] = {
    "AnomalySynthesizer": "anomalib_promptmad.data.synthetic.synthesizer",
    "MultiClassDataset": "anomalib_promptmad.data.multiclass",
    "MultiClassFolder": "anomalib_promptmad.data.multiclass",
    "MultiClassMVTecAD": "anomalib_promptmad.data.multiclass",
    "PerCategoryMetrics": "anomalib_promptmad.data.per_category_metrics",
    "SyntheticAnomalyDataset": "anomalib_promptmad.data.synthetic.dataset",
    "category_from_path": "anomalib_promptmad.data.category",
    "generate_demo_dataset": "anomalib_promptmad.data.demo",
}

if TYPE_CHECKING:
    from anomalib_promptmad.data.category import category_from_path
    from anomalib_promptmad.data.demo import generate_demo_dataset
    from anomalib_promptmad.data.multiclass import MultiClassDataset, MultiClassFolder, MultiClassMVTecAD
    from anomalib_promptmad.data.per_category_metrics import PerCategoryMetrics
    from anomalib_promptmad.data.synthetic.dataset import SyntheticAnomalyDataset
    from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer


def __getattr__(name: str) -> Any:
    """Import public names on first access."""
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        msg = f"module 'anomalib_promptmad.data' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
