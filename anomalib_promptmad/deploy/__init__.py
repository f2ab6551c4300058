# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Deployment of PromptMAD: checkpoint and backend checks, per-image prediction files, ``promptmad-infer``.

* :class:`PredictionCSVWriter`: ``anomalib predict`` writes ``predictions.csv`` (PromptMAD adds it itself).
* :func:`run_inference` / ``promptmad-infer``: run an exported ``.pt`` / ``.onnx`` / ``.xml`` model on a
  folder with anomalib's inferencers; write overlays and the CSV.
* :func:`check_promptmad_checkpoint`, :func:`require_packages`: the clear errors for bad inputs.

Names resolve on first use, so ``promptmad-infer`` can check its arguments before torch is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

# public name -> module that defines it (imported on first use)
_LAZY_EXPORTS: dict[str, str] = {
    "MissingBackendError": "anomalib_promptmad.deploy.backends",
    "require_packages": "anomalib_promptmad.deploy.backends",
    "NotAPromptMADCheckpointError": "anomalib_promptmad.deploy.checkpoint",
    "UncalibratedModelError": "anomalib_promptmad.deploy.checkpoint",
    "check_promptmad_checkpoint": "anomalib_promptmad.deploy.checkpoint",
    "run_inference": "anomalib_promptmad.deploy.infer",
    "PREDICTIONS_FILE_NAME": "anomalib_promptmad.deploy.predictions",
    "PredictionCSVWriter": "anomalib_promptmad.deploy.predictions",
    "PredictionRow": "anomalib_promptmad.deploy.predictions",
    "UnreadableImageError": "anomalib_promptmad.deploy.predictions",
    "write_predictions_csv": "anomalib_promptmad.deploy.predictions",
}

__all__ = sorted(_LAZY_EXPORTS)

if TYPE_CHECKING:
    from anomalib_promptmad.deploy.backends import MissingBackendError, require_packages
    from anomalib_promptmad.deploy.checkpoint import (
        NotAPromptMADCheckpointError,
        UncalibratedModelError,
        check_promptmad_checkpoint,
    )
    from anomalib_promptmad.deploy.infer import run_inference
    from anomalib_promptmad.deploy.predictions import (
        PREDICTIONS_FILE_NAME,
        PredictionCSVWriter,
        PredictionRow,
        UnreadableImageError,
        write_predictions_csv,
    )

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
