# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""UniAD/OneNIP feature jitter: token noise proportional to the token norm (training only)."""

from __future__ import annotations

import torch

__all__ = ["feature_jitter"]


def feature_jitter(tokens: torch.Tensor, scale: float, probability: float) -> torch.Tensor:
    """Add ``N(0, 1) * ||x|| / C * scale`` to every token, with one Bernoulli draw per call.

    Args:
        tokens: Tensor of shape ``(B, N, C)``.
        scale: Noise scale (20 in OneNIP).
        probability: Chance that this call adds noise at all (1.0 in OneNIP).

    Returns:
        Tensor of shape ``(B, N, C)``.
    """
    if scale <= 0 or probability <= 0 or torch.rand(()) >= probability:
        return tokens
    channels = tokens.shape[-1]
    magnitude = tokens.norm(dim=-1, keepdim=True) / channels * scale
    return tokens + torch.randn_like(tokens) * magnitude
