# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD for anomalib: cross-modal prompting for multi-class anomaly localisation.

The package is imported at interpreter start-up by its registration hook, so this module stays
free of heavy imports: public names resolve lazily on first attribute access.

Example:
    >>> from anomalib_promptmad import PromptMAD, MultiClassMVTecAD  # doctest: +SKIP
    >>> model = PromptMAD()  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY_EXPORTS: dict[str, str] = {
    "PromptMAD": "anomalib_promptmad.lightning_model",
    "MultiClassMVTecAD": "anomalib_promptmad.data.multiclass",
    "MultiClassFolder": "anomalib_promptmad.data.multiclass",
    "generate_demo_dataset": "anomalib_promptmad.data.demo",
}

__all__ = [*_LAZY_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from anomalib_promptmad.data.demo import generate_demo_dataset
    from anomalib_promptmad.data.multiclass import MultiClassFolder, MultiClassMVTecAD
    from anomalib_promptmad.lightning_model import PromptMAD


def __getattr__(name: str) -> Any:  # noqa: ANN401
    """Import public names on first access (PEP 562)."""
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        msg = f"module 'anomalib_promptmad' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
