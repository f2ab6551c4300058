# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Locally aggregated multi-level patch features, as Patchcore builds them, for prompt matching.

Each chosen backbone level is averaged over its 3 x 3 neighbourhood (a patch then describes its
surroundings, which makes matching robust to small shifts), brought to the finest chosen level's grid and
concatenated. With the default Lite2 levels at strides 8 and 16 this is 48 + 120 = 168 channels at stride 8,
the embedding anomalib's Patchcore uses with ``layers=["blocks.2", "blocks.4"]`` on the same backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["PatchEmbedding"]


class PatchEmbedding(nn.Module):
    """Backbone levels -> ``(B, C, H / s, W / s)`` locally aggregated patch features.

    Args:
        levels: Indices of the backbone levels to use, finest first.
        channels: Channels of every backbone level.
        strides: Stride of every backbone level.
    """

    def __init__(self, levels: Sequence[int], channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if not levels:
            msg = "prompt matching needs at least one backbone level"
            raise ValueError(msg)
        self.levels = list(levels)
        self.out_channels = int(sum(channels[index] for index in self.levels))
        self.stride = int(min(strides[index] for index in self.levels))
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Aggregate and concatenate.

        Args:
            features: All backbone maps, level ``i`` of shape ``(B, C_i, H / s_i, W / s_i)``.

        Returns:
            ``(B, out_channels, H / stride, W / stride)``.
        """
        chosen = [self.pool(features[index]) for index in self.levels]
        size = chosen[0].shape[-2:]
        resized = [
            level if level.shape[-2:] == size else F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            for level in chosen
        ]
        return torch.cat(resized, dim=1)
