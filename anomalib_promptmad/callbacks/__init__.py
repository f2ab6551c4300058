# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Lightning callbacks for anomalib models (as anomalib keeps its own in ``anomalib.callbacks``).

Public names resolve lazily (PEP 562): the package is importable without importing anomalib or Lightning.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_promptmad.callbacks import PerCategoryMetrics
    >>> engine = Engine(callbacks=[PerCategoryMetrics()])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

__all__ = ["PerCategoryMetrics"]

_LAZY_EXPORTS: dict[str, str] = {
    "PerCategoryMetrics": "anomalib_promptmad.callbacks.per_category_metrics",
}

if TYPE_CHECKING:
    from anomalib_promptmad.callbacks.per_category_metrics import PerCategoryMetrics


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
