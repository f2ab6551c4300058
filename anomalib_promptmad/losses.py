# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD training losses: feature restoration, focal and Dice on the pixel logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.ops import sigmoid_focal_loss

__all__ = ["PromptMADLoss", "dice_loss"]


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per sample, averaged over the batch.

    Normal samples (empty target) are kept: for them the loss pushes every probability to zero.

    Args:
        logits: ``(B, 1, H, W)`` logits.
        target: ``(B, 1, H, W)`` mask in [0, 1].
        smooth: Additive smoothing.

    Returns:
        Scalar loss.
    """
    probability = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    intersection = (probability * target).sum(1)
    denominator = probability.pow(2).sum(1) + target.pow(2).sum(1)
    return (1 - (2 * intersection + smooth) / (denominator + smooth)).mean()


class PromptMADLoss(nn.Module):
    """Weighted sum of the loss terms; every term has its own weight (0 switches it off).

    Args:
        reconstruction_weight: Weight of the feature MSE (OneNIP: 1.0).
        focal_weight: Weight of the sigmoid focal loss on pixel logits (PromptMAD's addition).
        dice_weight: Weight of the Dice loss on pixel logits (OneNIP: 0.5).
        focal_alpha: Focal-loss weight of the anomalous class (0.5 = balanced).
        focal_gamma: Focal-loss focusing parameter.
    """

    def __init__(
        self,
        reconstruction_weight: float = 1.0,
        focal_weight: float = 1.0,
        dice_weight: float = 0.5,
        focal_alpha: float = 0.5,
        focal_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        self.reconstruction_weight = reconstruction_weight
        self.focal_weight = focal_weight
        self.dice_weight = dice_weight
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def forward(
        self,
        reconstruction: torch.Tensor,
        target: torch.Tensor,
        pixel_logits: Sequence[torch.Tensor],
        mask: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Compute the loss terms.

        Args:
            reconstruction: ``(N, C, h, w)`` reconstructed features.
            target: ``(N, C, h, w)`` clean features.
            pixel_logits: Logit maps ``(N, 1, H', W')`` (coarse and refined); upsampled to the mask size.
            mask: ``(N, 1, H, W)`` target mask.

        Returns:
            Dict with ``loss`` (the weighted total) and every unweighted term
            (``reconstruction``, ``focal``, ``dice``; pixel terms only when logits are given).
        """
        terms: dict[str, torch.Tensor] = {"reconstruction": F.mse_loss(reconstruction, target)}
        total = self.reconstruction_weight * terms["reconstruction"]
        if pixel_logits:
            logits = [
                F.interpolate(item, size=mask.shape[-2:], mode="bilinear", align_corners=False) for item in pixel_logits
            ]
            terms["focal"] = torch.stack([
                sigmoid_focal_loss(item, mask, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="mean")
                for item in logits
            ]).sum()
            terms["dice"] = torch.stack([dice_loss(item, mask) for item in logits]).sum()
            total = total + self.focal_weight * terms["focal"] + self.dice_weight * terms["dice"]
        terms["loss"] = total
        return terms
