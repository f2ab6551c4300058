# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Multi-scale backbone features -> one standardised, stride-aligned token map, and learned position embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.models.components.base.dynamic_buffer import DynamicBufferMixin
from torch import nn

__all__ = ["RESAMPLING_MODES", "FeatureTokenizer", "LearnedPositionEmbedding"]

# how finer and coarser backbone levels are brought to the token grid (see FeatureTokenizer)
RESAMPLING_MODES = ("area", "bilinear")


class FeatureTokenizer(DynamicBufferMixin, nn.Module):
    """Bring every backbone level to the token stride, concatenate them, and standardise each channel.

    Levels finer than the token grid are area-averaged onto it (each token is the mean of the positions it
    covers); coarser levels are upsampled bilinearly with ``align_corners=False``, so every level stays
    registered to the pixels it was computed from. OneNIP's neck resizes every level with
    ``UpsamplingBilinear2d`` (``align_corners=True``), which point-samples the stride-2 and stride-4 levels
    (aliasing) and shifts them by up to half a token; ``resampling="bilinear"`` keeps that behaviour for
    checkpoints trained with it.

    The levels differ in scale by an order of magnitude, so a plain L2 distance over the concatenation is
    decided by a few large channels. With ``standardize=True`` each channel is standardised with the mean and
    standard deviation of normal training tokens (:meth:`fit_statistics`, once before training): the
    reconstruction target, its loss and the distance map ``D`` then weigh every channel by its normal
    variation. Until the statistics are fitted the tokens pass unstandardised.

    Args:
        in_channels: Channels of each backbone level, e.g. ``[16, 24, 48, 120]``.
        in_strides: Stride of each level, e.g. ``[2, 4, 8, 16]``.
        token_stride: Stride of the output map (16 in OneNIP).
        resampling: ``"area"`` (default) or ``"bilinear"`` (OneNIP's ``align_corners=True`` resize).
        standardize: Standardise each channel with fitted normal statistics.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        token_stride: int = 16,
        resampling: str = "area",
        standardize: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(in_strides):
            msg = f"in_channels ({len(in_channels)}) and in_strides ({len(in_strides)}) differ in length"
            raise ValueError(msg)
        if resampling not in RESAMPLING_MODES:
            msg = f"token resampling must be one of {list(RESAMPLING_MODES)}, got {resampling!r}"
            raise ValueError(msg)
        self.in_strides = list(in_strides)
        self.token_stride = token_stride
        self.out_channels = int(sum(in_channels))
        self.resampling = resampling
        self.standardize = standardize
        if standardize:
            self.register_buffer("channel_mean", torch.empty(0))  # (C,) of normal training tokens
            self.register_buffer("channel_std", torch.empty(0))  # (C,)
            self.channel_mean: torch.Tensor
            self.channel_std: torch.Tensor

    @property
    def has_statistics(self) -> bool:
        """Whether standardisation statistics are fitted (always ``True`` without standardisation)."""
        return not self.standardize or self.channel_mean.numel() > 0

    def _resize(self, feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if feature.shape[-2:] == size:
            return feature
        if self.resampling == "bilinear":
            return F.interpolate(feature, size=size, mode="bilinear", align_corners=True)
        height, width = feature.shape[-2:]
        if height % size[0] == 0 and width % size[1] == 0:
            # a plain average pool (static kernel) where the grids divide: the same area mean, and an exported
            # graph without adaptive pooling
            return F.avg_pool2d(feature, (height // size[0], width // size[1]))
        if height >= size[0] and width >= size[1]:
            return F.adaptive_avg_pool2d(feature, size)
        return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)

    def concatenate(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Resample every level to ``size`` and concatenate, unstandardised: ``(B, sum(C_i), h, w)``."""
        return torch.cat([self._resize(feature, size) for feature in features], dim=1)

    @torch.no_grad()
    def fit_statistics(self, tokens: torch.Tensor) -> None:
        """Fit the per-channel standardisation on unstandardised normal tokens.

        Args:
            tokens: ``(N, C, h, w)`` output of :meth:`concatenate` for normal training images.
        """
        if not self.standardize:
            return
        flat = tokens.transpose(0, 1).flatten(1).double()
        self.channel_mean = flat.mean(1).float()
        # a channel that never varies (a dead ReLU) would divide by zero
        self.channel_std = flat.std(1).float().clamp_min(1e-3)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Resample, concatenate and standardise.

        Args:
            features: Backbone maps, level ``i`` of shape ``(B, C_i, H / s_i, W / s_i)``.
            size: Token grid ``(h, w) = (H / token_stride, W / token_stride)``.

        Returns:
            Tensor of shape ``(B, sum(C_i), h, w)``.
        """
        tokens = self.concatenate(features, size)
        if self.standardize and self.channel_mean.numel():
            tokens = (tokens - self.channel_mean.view(1, -1, 1, 1)) / self.channel_std.view(1, -1, 1, 1)
        return tokens


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
