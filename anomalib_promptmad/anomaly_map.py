# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fusion of the reconstruction map and the segmentor map into the anomaly map and image score.

OneNIP fuses ``0.5 * distance + 0.5 * s * probability`` with ``s`` taken from the min/max of the
distances over the whole *test set*. We instead divide the distance by a per-category scale measured on
normal *training* images after training (a high quantile of their distances), so nothing depends on
test data and a single image is scored the same way whatever else is in the batch.

Scores are squashed with ``x / (1 + x)``: monotone, so rankings (AUROC, AP) are untouched, and inside
[0, 1], where torchmetrics does not mistake them for logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["AnomalyMapGenerator"]


class AnomalyMapGenerator(nn.Module):
    """Build anomaly maps and image scores.

    Args:
        segmentation_weight: Weight of the pixel-head probability; the distance map gets ``1 - weight``.
        pool_size: Average-pool window for the image score (OneNIP: 16).
    """

    def __init__(self, segmentation_weight: float = 0.5, pool_size: int = 16) -> None:
        super().__init__()
        if not 0.0 <= segmentation_weight <= 1.0:
            msg = f"segmentation_weight must be in [0, 1], got {segmentation_weight}"
            raise ValueError(msg)
        self.segmentation_weight = segmentation_weight
        self.pool_size = pool_size

    def forward(
        self,
        distance: torch.Tensor,
        scale: torch.Tensor,
        pixel_logits: torch.Tensor | None,
        image_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse.

        Args:
            distance: ``(B, 1, h, w)`` L2 distance between reconstruction and features.
            scale: ``(B,)`` per-image distance scale (that of its inferred category).
            pixel_logits: ``(B, 1, H', W')`` pixel-head logits, or ``None`` (reconstruction only).
            image_size: Output ``(H, W)``.

        Returns:
            ``(anomaly_map, pred_score)``: ``(B, 1, H, W)`` and ``(B,)``, both in [0, 1).
        """
        fused = F.interpolate(distance, size=image_size, mode="bilinear", align_corners=True)
        fused = fused / scale.view(-1, 1, 1, 1)
        if pixel_logits is not None:
            probability = torch.sigmoid(
                F.interpolate(pixel_logits, size=image_size, mode="bilinear", align_corners=False),
            )
            fused = (1 - self.segmentation_weight) * fused + self.segmentation_weight * probability
        window = min(self.pool_size, image_size[0], image_size[1])
        # separable box filter: the same mean as a window x window average pool, in O(2 window) per pixel
        pooled = F.avg_pool2d(F.avg_pool2d(fused, (window, 1), stride=1), (1, window), stride=1)
        score = pooled.flatten(1).amax(dim=1)
        return fused / (1 + fused), score / (1 + score)
