# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Multi-scale backbone features -> one stride-aligned feature map, and learned position embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["FeatureTokenizer", "LearnedPositionEmbedding"]


class FeatureTokenizer(nn.Module):
    """Resize every backbone level to the token stride and concatenate them (OneNIP's MFCN neck).

    OneNIP resizes with ``UpsamplingBilinear2d`` (``align_corners=True``); we keep that so that features
    match the reference layout. The module has no parameters.

    Args:
        in_channels: Channels of each backbone level, e.g. ``[16, 24, 48, 120]``.
        in_strides: Stride of each level, e.g. ``[2, 4, 8, 16]``.
        token_stride: Stride of the output map (16 in OneNIP).
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], token_stride: int = 16) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides):
            msg = f"in_channels ({len(in_channels)}) and in_strides ({len(in_strides)}) differ in length"
            raise ValueError(msg)
        self.in_strides = list(in_strides)
        self.token_stride = token_stride
        self.out_channels = int(sum(in_channels))

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Resize and concatenate.

        Args:
            features: Backbone maps, level ``i`` of shape ``(B, C_i, H / s_i, W / s_i)``.
            size: Token grid ``(h, w) = (H / token_stride, W / token_stride)``.

        Returns:
            Tensor of shape ``(B, sum(C_i), h, w)``.
        """
        resized = [
            feature if feature.shape[-2:] == size else F.interpolate(feature, size=size, mode="bilinear", align_corners=True)
            for feature in features
        ]
        return torch.cat(resized, dim=1)


class LearnedPositionEmbedding(nn.Module):
    """DETR-style learned row/column embedding, ``pos[h, w] = cat(col[w], row[h])``.

    Args:
        grid_size: Token grid ``(h, w)`` the embedding is learned for.
        dim: Embedding width (even).
    """

    def __init__(self, grid_size: tuple[int, int], dim: int) -> None:
        super().__init__()
        if dim % 2:
            msg = f"position embedding width must be even, got {dim}"
            raise ValueError(msg)
        self.grid_size = grid_size
        self.row_embed = nn.Embedding(grid_size[0], dim // 2)
        self.col_embed = nn.Embedding(grid_size[1], dim // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Position embedding for a token grid.

        Args:
            size: Token grid ``(h, w)``. A grid other than the trained one is served by bilinear
                interpolation of the learned embedding (inputs at other image sizes).

        Returns:
            Tensor of shape ``(h * w, dim)``, row-major over the grid.
        """
        h, w = self.grid_size
        pos = torch.cat(
            [
                self.col_embed.weight.unsqueeze(0).expand(h, w, -1),
                self.row_embed.weight.unsqueeze(1).expand(h, w, -1),
            ],
            dim=-1,
        )
        if tuple(size) != (h, w):
            pos = F.interpolate(pos.permute(2, 0, 1).unsqueeze(0), size=size, mode="bilinear", align_corners=False)
            pos = pos.squeeze(0).permute(1, 2, 0)
        return pos.reshape(-1, pos.shape[-1])
