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

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY_EXPORTS: dict[str, str] = {
    "PromptMAD": "anomalib_promptmad.lightning_model",
    "MultiClassMVTecAD": "anomalib_promptmad.data.mvtec",
    "MultiClassFolder": "anomalib_promptmad.data.folder",
    "generate_demo_dataset": "anomalib_promptmad.data.demo",
}

__all__ = [*_LAZY_EXPORTS, "__version__"]

if TYPE_CHECKING:
    from anomalib_promptmad.data.demo import generate_demo_dataset
    from anomalib_promptmad.data.folder import MultiClassFolder
    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD
    from anomalib_promptmad.lightning_model import PromptMAD


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
