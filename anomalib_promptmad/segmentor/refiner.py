# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""OneNIP's refiner: residual features -> stride-4 anomaly logits."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResidualRefiner"]


class ResidualRefiner(nn.Module):
    """``|reconstruction - features|`` -> 2 x [conv3x3-BN-ReLU-ConvT(2, 2)] -> conv1x1 logits.

    Args:
        in_channels: Channels of the residual (the backbone feature width).
        hidden_channels: Width of the two blocks (128 in OneNIP).
    """

    def __init__(self, in_channels: int, hidden_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, hidden_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(hidden_channels),
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(hidden_channels, hidden_channels, 2, stride=2),
            ]
            channels = hidden_channels
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Conv2d(hidden_channels, 1, 1)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, h, w)`` residuals at stride 16 to ``(B, 1, 4h, 4w)`` logits (stride 4)."""
        return self.head(self.blocks(residual))
