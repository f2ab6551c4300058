# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Pixel-level heads that turn the reconstruction residual into anomaly-map logits.

- :class:`ResidualRefiner`: OneNIP's refiner (the OneNIP-only ablation).
- :class:`TextGuidedSegmentor`: PromptMAD's segmentor (multi-scale conv features, spatial attention with
  text cross-attention), optionally followed by :class:`DiffusionRefinement` of its logits.
"""

from .diffusion import DiffusionRefinement, linear_beta_schedule
from .refiner import ResidualRefiner
from .text_guided import TextGuidedSegmentor

__all__ = ["DiffusionRefinement", "ResidualRefiner", "TextGuidedSegmentor", "linear_beta_schedule"]
