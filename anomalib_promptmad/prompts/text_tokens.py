# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category text embeddings held as buffers and projected into the model width as text tokens."""

from __future__ import annotations

import torch
from anomalib.models.components.base.dynamic_buffer import DynamicBufferMixin
from torch import nn

__all__ = ["TextTokens"]


class TextTokens(DynamicBufferMixin):
    """Class text prompts as tokens: ``[normal, anomalous]`` per category.

    The sentence embeddings come from a text encoder once, before training, and live in the
    ``embeddings`` buffer (saved in checkpoints and exported graphs), so no text encoder is needed at
    inference. The buffer is resized on checkpoint load, so the number of categories and the encoder
    width need not be known when the model is built.

    Args:
        dim: Output token width.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("embeddings", torch.empty(0))
        self.embeddings: torch.Tensor
        self.projection = nn.LazyLinear(dim)
        # distinguishes the normal token from the anomalous one after projection
        self.state_embedding = nn.Parameter(torch.zeros(2, dim))

    @property
    def is_set(self) -> bool:
        """Whether text embeddings have been set (or loaded)."""
        return self.embeddings.numel() > 0

    def set_embeddings(self, embeddings: torch.Tensor) -> None:
        """Set the class embeddings.

        Args:
            embeddings: ``(num_categories, 2, E)`` L2-normalised ``[normal, anomalous]`` embeddings.
        """
        if embeddings.ndim != 3 or embeddings.shape[1] != 2:
            msg = f"text embeddings must have shape (num_categories, 2, E), got {tuple(embeddings.shape)}"
            raise ValueError(msg)
        self.embeddings = embeddings.detach().to(self.state_embedding.device, torch.float32)
        if isinstance(self.projection, nn.LazyLinear):
            # materialise now so the optimiser sees real parameters
            self.projection(self.embeddings[:1])

    def forward(self, category_index: torch.Tensor) -> torch.Tensor:
        """Text tokens for a batch.

        Args:
            category_index: ``(B,)`` long tensor of category indices.

        Returns:
            ``(B, 2, dim)`` tokens ``[normal, anomalous]``.
        """
        return self.projection(self.embeddings[category_index]) + self.state_embedding
