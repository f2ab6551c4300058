# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category memory of normal patches and the prompt-matching map ``M``.

For each query patch, ``M`` is its distance to the nearest patch of its own category's normal prompts
(the category inferred by the network, never a label). Each category's bank is the greedy k-center coreset
(:func:`~anomalib_promptmad.matching.coreset.greedy_coreset_indices`) of the patch embeddings of its normal
training images. The banks are buffers padded to one length, so an exported graph carries them and
searches only the row of the inferred category: a gather, one matrix product, a minimum and the distance to
the patch it picks, no data-dependent control flow. Padding rows have an infinite squared norm and can never be
the nearest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from anomalib.models.components.base.dynamic_buffer import DynamicBufferMixin
from torch import nn

__all__ = ["PatchBank"]


class PatchBank(DynamicBufferMixin, nn.Module):
    """Per-category coreset of normal patch features, searched for nearest neighbours.

    Args:
        chunk_size: Bank rows compared at once (memory only: ``B * h * w * chunk_size`` floats).
    """

    def __init__(self, chunk_size: int = 4096) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        self.register_buffer("patches", torch.empty(0))  # (K, N, C) zero-padded
        self.register_buffer("squared_norms", torch.empty(0))  # (K, N) inf on padding rows
        self.register_buffer("sizes", torch.empty(0, dtype=torch.long))  # (K,) real rows per category
        self.patches: torch.Tensor
        self.squared_norms: torch.Tensor
        self.sizes: torch.Tensor

    @property
    def is_set(self) -> bool:
        """Whether the banks have been filled."""
        return self.patches.numel() > 0

    def set_banks(self, banks: Sequence[torch.Tensor]) -> None:
        """Store one ``(N_k, C)`` bank per category (in category order)."""
        if not banks or any(bank.ndim != 2 or bank.shape[0] == 0 for bank in banks):
            msg = "every category needs a non-empty (N, C) patch bank"
            raise ValueError(msg)
        length = max(bank.shape[0] for bank in banks)
        device = banks[0].device
        patches = torch.zeros(len(banks), length, banks[0].shape[1], device=device)
        norms = torch.full((len(banks), length), torch.inf, device=device)
        for index, bank in enumerate(banks):
            patches[index, : bank.shape[0]] = bank.float()
            norms[index, : bank.shape[0]] = bank.float().pow(2).sum(1)
        self.patches = patches
        self.squared_norms = norms
        self.sizes = torch.tensor([bank.shape[0] for bank in banks], dtype=torch.long, device=device)

    @property
    def memory_bytes(self) -> list[int]:
        """Bytes each category's bank holds (its real rows, float32)."""
        if not self.is_set:
            return []
        return [int(size) * self.patches.shape[-1] * 4 for size in self.sizes.tolist()]

    def forward(self, embedding: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Distance of every patch to its nearest bank patch of the image's category.

        Args:
            embedding: ``(B, C, h, w)`` query patch features.
            category: ``(B,)`` category of each image.

        Returns:
            ``(B, 1, h, w)`` nearest-neighbour L2 distances.
        """
        batch, _, height, width = embedding.shape
        query = embedding.flatten(2).transpose(1, 2)  # (B, hw, C)
        bank = self.patches[category]  # (B, N, C): only the image's own category is read
        norms = self.squared_norms[category]
        # The nearest p minimises |p|^2 - 2 q.p (|q|^2 is the same for all p). The bank is searched in fixed
        # chunks (a static loop, unrolled on export) so the (hw, N) products stay small.
        closest, nearest = None, None
        for start in range(0, bank.shape[1], self.chunk_size):
            stop = start + self.chunk_size
            # one fused |p|^2 - 2 q.p: a separate product, scale and subtraction read (B, hw, chunk) three times
            scores = torch.baddbmm(norms[:, None, start:stop], query, bank[:, start:stop].transpose(1, 2), alpha=-2)
            part, index = scores.min(dim=2)
            if closest is None or nearest is None:
                closest, nearest = part, index
            else:
                better = part < closest
                closest, nearest = torch.where(better, part, closest), torch.where(better, index + start, nearest)
        assert nearest is not None  # set_banks refuses empty banks
        # The distance itself is measured to the chosen patch: through the expansion above it would carry
        # float32 cancellation error of order sqrt(eps * |q|^2), about 1e-3, even for a patch that is in the bank.
        chosen = bank.gather(1, nearest.unsqueeze(2).expand(-1, -1, bank.shape[2]))  # (B, hw, C)
        return (query - chosen).pow(2).sum(2).sqrt().view(batch, 1, height, width)
