# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fusion of the reconstruction map and the segmentor map into the anomaly map and image score.

OneNIP fuses ``0.5 * distance + 0.5 * s * probability`` with ``s`` taken from the min/max of the
distances over the whole *test set*. We instead divide the distance by a per-category scale measured on
normal *training* images after training (a high quantile of their distances), so nothing depends on
test data and a single image is scored the same way whatever else is in the batch.

Each category then has its own fusion rule (:mod:`anomalib_promptmad.fusion_rule`, chosen on the
validation split by default): a weighted sum ``(1 - w) * D + w * P`` or the product ``D * P``. Both are
given per image as tensors, so one exported graph serves every category.

Scores are squashed with ``x / (1 + x)``: monotone, so rankings (AUROC, AP) are untouched, and inside
[0, 1], where torchmetrics does not mistake them for logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["AnomalyMapGenerator", "fuse_maps"]


def fuse_maps(
    distance: torch.Tensor,
    probability: torch.Tensor,
    weight: torch.Tensor,
    product: torch.Tensor,
) -> torch.Tensor:
    """Fuse per image: ``product * D * P + (1 - product) * ((1 - weight) * D + weight * P)``.

    Args:
        distance: ``(B, 1, H, W)`` scaled distance map ``D`` (about 1 at a normal image's 99th percentile).
        probability: ``(B, 1, H, W)`` pixel-head probability ``P``.
        weight: ``(B,)`` weight of ``P`` in the sum.
        product: ``(B,)`` 1 where the rule is the product, 0 where it is the sum.

    Returns:
        ``(B, 1, H, W)`` fused map, >= 0.
    """
    weight = weight.view(-1, 1, 1, 1)
    product = product.view(-1, 1, 1, 1)
    # arithmetic blend rather than torch.where: one graph for both rules, exported without control flow
    return product * distance * probability + (1 - product) * ((1 - weight) * distance + weight * probability)


class AnomalyMapGenerator(nn.Module):
    """Build anomaly maps and image scores.

    Args:
        pool_size: Average-pool window for the image score (OneNIP: 16).
    """

    def __init__(self, pool_size: int = 16) -> None:
        super().__init__()
        self.pool_size = pool_size

    @staticmethod
    def component_maps(
        distance: torch.Tensor,
        scale: torch.Tensor,
        pixel_logits: torch.Tensor,
        image_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring both maps to the image size: the scaled distance ``D`` and the probability ``P``.

        Args:
            distance: ``(B, 1, h, w)`` L2 distance between reconstruction and features.
            scale: ``(B,)`` per-image distance scale (that of its inferred category).
            pixel_logits: ``(B, 1, H', W')`` pixel-head logits.
            image_size: Output ``(H, W)``.

        Returns:
            ``(D, P)``, each ``(B, 1, H, W)``.
        """
        scaled = F.interpolate(distance, size=image_size, mode="bilinear", align_corners=True)
        scaled = scaled / scale.view(-1, 1, 1, 1)
        probability = torch.sigmoid(F.interpolate(pixel_logits, size=image_size, mode="bilinear", align_corners=False))
        return scaled, probability

    def forward(
        self,
        distance: torch.Tensor,
        probability: torch.Tensor,
        weight: torch.Tensor,
        product: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the component maps with each image's rule (see :func:`fuse_maps`) and score the image.

        Returns:
            ``(anomaly_map, pred_score)``: ``(B, 1, H, W)`` and ``(B,)``, both in [0, 1).
        """
        fused = fuse_maps(distance, probability, weight, product)
        window = min(self.pool_size, fused.shape[-2], fused.shape[-1])
        # separable box filter: the same mean as a window x window average pool, in O(2 window) per pixel
        pooled = F.avg_pool2d(F.avg_pool2d(fused, (window, 1), stride=1), (1, window), stride=1)
        score = pooled.flatten(1).amax(dim=1)
        return fused / (1 + fused), score / (1 + score)
