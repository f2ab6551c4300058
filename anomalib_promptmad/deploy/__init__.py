# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Deployment of PromptMAD: checkpoint and backend checks, per-image prediction files, ``promptmad-infer``.

* :class:`PredictionCSVWriter`: ``anomalib predict`` writes ``predictions.csv`` (PromptMAD adds it itself).
* :func:`run_inference` / ``promptmad-infer``: run an exported ``.pt`` / ``.onnx`` / ``.xml`` model on a
  folder with anomalib's inferencers; write overlays and the CSV.
* :func:`check_promptmad_checkpoint`, :func:`require_packages`: the clear errors for bad inputs.
"""

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

__all__ = [
    "PREDICTIONS_FILE_NAME",
    "MissingBackendError",
    "NotAPromptMADCheckpointError",
    "PredictionCSVWriter",
    "PredictionRow",
    "UncalibratedModelError",
    "UnreadableImageError",
    "check_promptmad_checkpoint",
    "require_packages",
    "run_inference",
    "write_predictions_csv",
]
