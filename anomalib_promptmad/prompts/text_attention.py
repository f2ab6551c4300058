# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Cross-attention from many visual tokens to a few text tokens, at a fraction of a full attention's cost.

With only ``T = 2`` text tokens (normal, anomalous), a standard multi-head cross-attention spends almost
all its time on the query and output projections of the ``N`` visual tokens (``2 N D^2``). Here the
values are projected on the text side (``T D^2``) and visual tokens only pay for a narrow query
projection (``N D d_k``): each token computes how much it resembles each state description and takes
the matching mix of text values.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TextCrossAttention"]


class TextCrossAttention(nn.Module):
    """Single-head cross-attention of ``(B, N, dim)`` tokens to ``(B, T, text_dim)`` text tokens.

    Args:
        dim: Visual token width (also the output width).
        text_dim: Text token width.
        key_dim: Width of the query/key space.
    """

    def __init__(self, dim: int, text_dim: int, key_dim: int = 64) -> None:
        super().__init__()
        self.query = nn.Linear(dim, key_dim)
        self.key = nn.Linear(text_dim, key_dim)
        self.value = nn.Linear(text_dim, dim)
        self.scale = 1.0 / math.sqrt(key_dim)

    def forward(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Attend.

        Args:
            tokens: ``(B, N, dim)`` visual tokens (queries).
            text: ``(B, T, text_dim)`` text tokens (keys and values).

        Returns:
            ``(B, N, dim)`` text read-out per visual token.
        """
        weights = torch.softmax(self.query(tokens) @ self.key(text).transpose(1, 2) * self.scale, dim=-1)
        return weights @ self.value(text)
