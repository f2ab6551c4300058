# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""OneNIP reconstruction network: shared encoder + two-way decoder, with optional text fusion."""

from __future__ import annotations

import torch
from torch import nn

from .decoder import TwoWayDecoder
from .encoder import TransformerEncoder
from .feature_jitter import feature_jitter
from .neighbour_mask import default_neighbour_size, neighbour_mask
from .tokens import LearnedPositionEmbedding

__all__ = ["PromptReconstructor"]


class PromptReconstructor(nn.Module):
    """Reconstruct a query's normal features from one normal image prompt (and the class text tokens).

    Args:
        feature_channels: Channels of the stride-aligned backbone feature map (e.g. 208 for
            EfficientNet-Lite2 levels 0-3).
        grid_size: Token grid ``(h, w)`` at the training image size.
        hidden_dim: Transformer width.
        num_heads: Attention heads.
        num_encoder_layers: Encoder depth.
        num_decoder_layers: Two-way decoder depth.
        dim_feedforward: FFN width.
        dropout: Dropout probability.
        neighbour_size: Blocked attention window ``(nh, nw)``; ``None`` uses OneNIP's ``grid // 2``.
        jitter_scale: Feature-jitter scale (training only); 0 disables it.
        jitter_probability: Chance of jitter per forward pass.
        use_text: Fuse class text tokens into the visual prompt and the decoder.
    """

    def __init__(
        self,
        feature_channels: int,
        grid_size: tuple[int, int],
        hidden_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        neighbour_size: tuple[int, int] | None = None,
        jitter_scale: float = 20.0,
        jitter_probability: float = 1.0,
        use_text: bool = True,
    ) -> None:
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.neighbour_size = tuple(neighbour_size) if neighbour_size else default_neighbour_size(self.grid_size)
        self.jitter_scale = jitter_scale
        self.jitter_probability = jitter_probability
        self.input_proj = nn.Linear(feature_channels, hidden_dim)
        self.output_proj = nn.Linear(hidden_dim, feature_channels)
        self.position = LearnedPositionEmbedding(self.grid_size, hidden_dim)
        self.encoder = TransformerEncoder(num_encoder_layers, hidden_dim, num_heads, dim_feedforward, dropout)
        self.decoder = TwoWayDecoder(num_decoder_layers, hidden_dim, num_heads, dim_feedforward, dropout, use_text)
        # text -> visual prompt fusion: the normal-state text shifts every prompt token
        self.text_to_prompt = nn.Linear(hidden_dim, hidden_dim) if use_text else None
        self.register_buffer("attn_mask", neighbour_mask(self.grid_size, self.neighbour_size), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        # UniAD's initialiser: xavier-uniform weights, zero biases (embeddings keep their uniform init)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _mask(self, size: tuple[int, int]) -> torch.Tensor:
        if tuple(size) == self.grid_size:
            return self.attn_mask
        # other input sizes: keep the blocked window the same fraction of the grid
        scaled = (
            max(1, round(self.neighbour_size[0] * size[0] / self.grid_size[0])),
            max(1, round(self.neighbour_size[1] * size[1] / self.grid_size[1])),
        )
        return neighbour_mask(size, scaled).to(self.attn_mask.device)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Encode stride-aligned features into tokens.

        Args:
            features: ``(B, C, h, w)`` backbone features.

        Returns:
            ``(B, h * w, D)`` encoded tokens.
        """
        size = (features.shape[-2], features.shape[-1])
        tokens = features.flatten(2).transpose(1, 2)
        if self.training:
            tokens = feature_jitter(tokens, self.jitter_scale, self.jitter_probability)
        return self.encoder(self.input_proj(tokens), self.position(size), self._mask(size))

    def prompt_stream(self, prompt_features: torch.Tensor, normal_text: torch.Tensor | None) -> torch.Tensor:
        """Encode the normal image prompt and fuse the normal-state text into it.

        Args:
            prompt_features: ``(B, C, h, w)`` features of the normal image prompt.
            normal_text: ``(B, D)`` normal-state text token, or ``None``.

        Returns:
            ``(B, h * w, D)`` prompt stream. At inference it is constant per category, so the model
            computes it once after training and keeps it as a buffer.
        """
        prompt = self.encode(prompt_features)
        if self.text_to_prompt is not None and normal_text is not None:
            prompt = prompt + self.text_to_prompt(normal_text).unsqueeze(1)
        return prompt

    def decode(
        self,
        prompt: torch.Tensor,
        query: torch.Tensor,
        size: tuple[int, int],
        text: torch.Tensor | None,
    ) -> torch.Tensor:
        """Reconstruct the query's normal features.

        Args:
            prompt: ``(B, N, D)`` prompt stream from :meth:`prompt_stream`.
            query: ``(B, N, D)`` encoded query tokens from :meth:`encode`.
            size: Token grid ``(h, w)`` with ``h * w = N``.
            text: ``(B, T, D)`` text tokens or ``None``.

        Returns:
            ``(B, C, h, w)`` reconstructed features.
        """
        tokens = self.decoder(prompt, query, self.position(size), self._mask(size), text)
        reconstruction = self.output_proj(tokens)
        return reconstruction.transpose(1, 2).reshape(reconstruction.shape[0], -1, size[0], size[1])
