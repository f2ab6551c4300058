# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""What a training step feeds the network besides the batch: synthetic defects and cached clean features.

* **Synthetic defects**, drawn by an :class:`~anomalib_promptmad.data.synthetic.AnomalySynthesizer` and placed
  on each category's object, estimated once per fit from its normal training images (textures and unreliable
  estimates: anywhere). See :mod:`anomalib_promptmad.data.synthetic.foreground`.
* **Clean backbone features**: the backbone is frozen, so the features of a clean training image are the same
  every epoch; a :class:`~anomalib_promptmad.backbone.feature_cache.FeatureCache` keeps them (not when the
  datamodule augments training images, which changes them every epoch).

Example:
    >>> inputs = TrainingInputs(AnomalySynthesizer(), foreground_placement=False, feature_cache_mb=0)
    >>> inputs.start(train_data=None, categories=["bottle"], augmented=False)
    >>> anomalous, masks = inputs.synthesize(torch.rand(2, 3, 64, 64), torch.zeros(2, dtype=torch.long),
    ...                                      torch.Generator().manual_seed(0))
    >>> masks.shape
    torch.Size([2, 1, 64, 64])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from anomalib_promptmad.backbone.feature_cache import BackboneFeatures, FeatureCache
from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.synthetic import AnomalySynthesizer, category_foregrounds, foreground_batch

__all__ = ["TrainingInputs"]

logger = logging.getLogger(__name__)


class TrainingInputs:
    """Synthetic defects on each category's object, and the clean training images' backbone features.

    Args:
        synthesizer: Draws the synthetic defects.
        foreground_placement: Restrict defects to each category's estimated object.
        feature_cache_mb: Memory budget (MB) of the clean-feature cache; 0 switches it off.
    """

    def __init__(self, synthesizer: AnomalySynthesizer, foreground_placement: bool, feature_cache_mb: float) -> None:
        if feature_cache_mb < 0:
            msg = f"feature_cache_mb must be >= 0 (0 switches the cache off), got {feature_cache_mb}"
            raise ValueError(msg)
        self.synthesizer = synthesizer
        self.foreground_placement = foreground_placement
        self.feature_cache_mb = feature_cache_mb
        self.feature_cache: FeatureCache | None = None
        self.foregrounds: list[torch.Tensor | None] | None = None  # per category index

    def start(self, train_data: Any, categories: Sequence[str], augmented: bool) -> None:  # noqa: ANN401
        """Estimate each category's object and start an empty feature cache (at the start of a fit).

        Args:
            train_data: The normal training images (an anomalib dataset with ``samples``), or ``None``.
            categories: Category names in index order.
            augmented: Whether the datamodule augments training images (the cache is then off).
        """
        self.foregrounds = None
        samples = getattr(train_data, "samples", None)
        if self.foreground_placement and samples is not None:
            if len(categories) == 1:
                category_of: Callable[[str], str] = lambda _path: categories[0]  # noqa: E731 - any layout for one
            else:
                category_of = category_from_path
            found = category_foregrounds(list(samples.image_path), category_of)
            self.foregrounds = [found.get(name) for name in categories]
        self.feature_cache = None
        if self.feature_cache_mb and augmented:
            logger.info("Training augmentations are set: the backbone features of training images are not cached.")
        elif self.feature_cache_mb:
            self.feature_cache = FeatureCache(self.feature_cache_mb)

    def stop(self) -> None:
        """Free the cache: it is only useful while training."""
        self.feature_cache = None

    def synthesize(
        self,
        images: torch.Tensor,
        category: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` images in [0, 1] with synthetic defects, and their ``(B, 1, H, W)`` masks.

        Synthesis is data preparation: it runs in full precision, also under mixed-precision autocast.
        """
        with torch.autocast(device_type=images.device.type, enabled=False):
            foreground = None
            if self.foregrounds:
                estimates = [self.foregrounds[index] for index in category.tolist()]
                foreground = foreground_batch(estimates, *images.shape[-2:], device=images.device)
            return self.synthesizer(images.float(), generator, foreground, categories=category)

    def clean_features(
        self,
        images: torch.Tensor,
        image_paths: Sequence[str] | None,
        backbone_features: Callable[[torch.Tensor], BackboneFeatures],
    ) -> BackboneFeatures | None:
        """Backbone features of clean ``images``, cached or computed (and cached) now; ``None`` without a cache."""
        if self.feature_cache is None or image_paths is None:
            return None
        cached = self.feature_cache.get(image_paths)
        if cached is None:
            cached = backbone_features(images)
            self.feature_cache.put(image_paths, cached)
        return cached
