# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Data for multi-class anomaly detection: datamodules, synthetic anomalies, demo data.

Public names resolve lazily (PEP 562) so that ``import anomalib_promptmad.data.category`` or the demo
generator do not import anomalib. The per-category metrics callback is in :mod:`anomalib_promptmad.callbacks`.

Example:
    >>> from anomalib_promptmad.data import category_from_path
    >>> category_from_path("datasets/MVTecAD/bottle/test/good/000.png")
    'bottle'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

__all__ = [
    "AnomalySynthesizer",
    "MultiClassDataset",
    "MultiClassFolder",
    "MultiClassMVTecAD",
    "SyntheticValidationDataset",
    "category_from_path",
    "generate_demo_dataset",
]

_LAZY_EXPORTS: dict[str, str] = {
    "AnomalySynthesizer": "anomalib_promptmad.data.synthetic.synthesizer",
    "MultiClassDataset": "anomalib_promptmad.data.dataset",
    "MultiClassFolder": "anomalib_promptmad.data.folder",
    "MultiClassMVTecAD": "anomalib_promptmad.data.mvtec",
    "SyntheticValidationDataset": "anomalib_promptmad.data.synthetic.dataset",
    "category_from_path": "anomalib_promptmad.data.category",
    "generate_demo_dataset": "anomalib_promptmad.data.demo",
}

if TYPE_CHECKING:
    from anomalib_promptmad.data.category import category_from_path
    from anomalib_promptmad.data.dataset import MultiClassDataset
    from anomalib_promptmad.data.demo import generate_demo_dataset
    from anomalib_promptmad.data.folder import MultiClassFolder
    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD
    from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset
    from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
