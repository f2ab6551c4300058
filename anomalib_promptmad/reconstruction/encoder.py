# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Post-norm Transformer encoder shared by the query image and the normal image prompt (UniAD/OneNIP)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TransformerEncoder", "TransformerEncoderLayer"]


class TransformerEncoderLayer(nn.Module):
    """Self-attention (position added to queries and keys, not values) + ReLU FFN, post-norm.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        dim_feedforward: FFN hidden width.
        dropout: Dropout on attention weights and residual branches.
    """

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim_feedforward),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, dim),
        )
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Encode.

        Args:
            tokens: ``(B, N, D)``.
            pos: ``(N, D)`` position embedding.
            mask: ``(N, N)`` bool, ``True`` = blocked, or ``None``.

        Returns:
            ``(B, N, D)``.
        """
        qk = tokens + pos
        attended, _ = self.self_attn(qk, qk, tokens, attn_mask=mask, need_weights=False)
        tokens = self.norm1(tokens + self.dropout1(attended))
        return self.norm2(tokens + self.dropout2(self.ffn(tokens)))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderLayer` (no final norm, as in the post-norm reference).

    Args:
        num_layers: Number of layers (4 in OneNIP).
        dim: Token width.
        num_heads: Attention heads.
        dim_feedforward: FFN hidden width.
        dropout: Dropout probability.
    """

    def __init__(self, num_layers: int, dim: int, num_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(dim, num_heads, dim_feedforward, dropout) for _ in range(num_layers)
        )

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Encode ``(B, N, D)`` tokens; see :meth:`TransformerEncoderLayer.forward`."""
        for layer in self.layers:
            tokens = layer(tokens, pos, mask)
        return tokens
