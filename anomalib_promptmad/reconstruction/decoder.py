# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Two-way (bidirectional) decoder between the prompt stream and the query stream.

The prompt stream (the normal image prompt, fused with text tokens) reads the query image, the query
image reads the updated prompt, and the reconstruction is taken from the prompt stream: the prompt is
"edited" into the query's normal appearance, so anomalies in the query have nothing normal to copy.

Unlike the OneNIP reference code, the image-to-prompt attention output is used: the reference computes
it, then adds the prompt stream's MLP output to the query stream instead (its
``cross_attn_image_to_prompt`` never receives a gradient). We implement the two-way update the paper
describes.
"""

from __future__ import annotations

import torch
from torch import nn

from anomalib_promptmad.prompts.text_attention import TextCrossAttention

__all__ = ["TwoWayDecoder", "TwoWayDecoderLayer"]


class TwoWayDecoderLayer(nn.Module):
    """Prompt->image cross-attention, optional prompt->text cross-attention, MLP, image->prompt cross-attention.

    Args:
        dim: Token width.
        num_heads: Attention heads.
        dim_feedforward: MLP hidden width.
        dropout: Dropout probability.
        use_text: Whether the prompt stream also attends to the class text tokens.
    """

    def __init__(self, dim: int, num_heads: int, dim_feedforward: int, dropout: float, use_text: bool) -> None:
        super().__init__()
        self.prompt_to_image = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.prompt_to_text = TextCrossAttention(dim, dim) if use_text else None
        self.mlp = nn.Sequential(nn.Linear(dim, dim_feedforward), nn.ReLU(inplace=True), nn.Linear(dim_feedforward, dim))
        self.image_to_prompt = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm_prompt_image = nn.LayerNorm(dim)
        self.norm_prompt_text = nn.LayerNorm(dim) if use_text else None
        self.norm_mlp = nn.LayerNorm(dim)
        self.norm_image = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        prompt: torch.Tensor,
        image: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | None,
        text: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update both streams.

        Args:
            prompt: Prompt stream ``(B, N, D)``.
            image: Query-image stream ``(B, N, D)``.
            pos: ``(N, D)`` position embedding, shared by both streams.
            mask: ``(N, N)`` neighbour mask (``True`` = blocked) or ``None``.
            text: Text tokens ``(B, T, D)`` or ``None``.

        Returns:
            Updated ``(prompt, image)``, each ``(B, N, D)``.
        """
        attended, _ = self.prompt_to_image(prompt + pos, image + pos, image, attn_mask=mask, need_weights=False)
        prompt = self.norm_prompt_image(prompt + self.dropout(attended))
        if self.prompt_to_text is not None and self.norm_prompt_text is not None and text is not None:
            prompt = self.norm_prompt_text(prompt + self.dropout(self.prompt_to_text(prompt + pos, text)))
        prompt = self.norm_mlp(prompt + self.dropout(self.mlp(prompt)))
        attended, _ = self.image_to_prompt(image + pos, prompt + pos, prompt, attn_mask=mask, need_weights=False)
        image = self.norm_image(image + self.dropout(attended))
        return prompt, image


class TwoWayDecoder(nn.Module):
    """Stack of :class:`TwoWayDecoderLayer` and a final unmasked prompt->image attention + LayerNorm.

    Args:
        num_layers: Number of two-way layers (4 in OneNIP).
        dim: Token width.
        num_heads: Attention heads.
        dim_feedforward: MLP hidden width.
        dropout: Dropout probability.
        use_text: Whether layers attend to text tokens.
    """

    def __init__(
        self,
        num_layers: int,
        dim: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float,
        use_text: bool,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayDecoderLayer(dim, num_heads, dim_feedforward, dropout, use_text) for _ in range(num_layers)
        )
        self.final_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.final_dropout = nn.Dropout(dropout)
        self.final_norm = nn.LayerNorm(dim)

    def forward(
        self,
        prompt: torch.Tensor,
        image: torch.Tensor,
        pos: torch.Tensor,
        mask: torch.Tensor | None,
        text: torch.Tensor | None,
    ) -> torch.Tensor:
        """Decode; returns the final prompt stream ``(B, N, D)`` (the reconstruction in token space)."""
        for layer in self.layers:
            prompt, image = layer(prompt, image, pos, mask, text)
        attended, _ = self.final_attn(prompt + pos, image + pos, image, need_weights=False)
        return self.final_norm(prompt + self.final_dropout(attended))
