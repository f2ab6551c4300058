# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fusion of the reconstruction map and the segmentor map into the anomaly map and image score.

OneNIP fuses ``0.5 * distance + 0.5 * s * probability`` with ``s`` taken from the min/max of the
distances over the whole *test set*. We instead divide the distance by a per-category scale measured on
normal *training* images after training (a high quantile of their distances), so nothing depends on
test data and a single image is scored the same way whatever else is in the batch.

Each category then has its own fusion rule (:mod:`anomalib_promptmad.fusion_rule`, chosen on the
validation split by default): a weighted sum of the maps, their weighted geometric mean or the product
``D * P``. All are given per image as tensors, so one exported graph serves every category.

The fused map and the image score are then divided by their category's thresholds
(:mod:`anomalib_promptmad.category_thresholds`), so that 1 is every category's threshold: the rules make
maps of very different ranges (``D * P`` is near 0 on normal pixels, ``M`` near 1), and one threshold over
all categories would otherwise flag every image of one category and none of another.

Scores are squashed with ``x / (1 + x)``: monotone, so rankings (AUROC, AP) are untouched, and inside
[0, 1], where torchmetrics does not mistake them for logits; a category's threshold lands at 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.models.components.filters.blur import compute_kernel_size
from torch import nn

__all__ = ["GEOMETRIC_FLOOR", "AnomalyMapGenerator", "SeparableGaussianBlur", "fuse_maps"]

# Below this a map value counts as 0 in a geometric mean: log(0) would make every pixel of a category rank
# equal wherever one component is exactly 0 (a saturated sigmoid), and ranking is all the rule is for.
GEOMETRIC_FLOOR = 1e-4


def fuse_maps(
    distance: torch.Tensor,
    probability: torch.Tensor,
    segmentation_weight: torch.Tensor,
    product: torch.Tensor,
    matching: torch.Tensor | None = None,
    matching_weight: torch.Tensor | None = None,
    geometric: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fuse per image with the weights ``w_D = 1 - w - w_M``, ``w`` (of ``P``) and ``w_M`` (of ``M``).

    The rule is ``D * P`` where ``product`` is 1, the weighted geometric mean ``D^w_D * P^w * M^w_M`` where
    ``geometric`` is 1, else the weighted sum ``w_D * D + w * P + w_M * M``.

    Args:
        distance: ``(B, 1, H, W)`` scaled distance map ``D`` (about 1 at a normal image's 99th percentile).
        probability: ``(B, 1, H, W)`` pixel-head probability ``P``.
        segmentation_weight: ``(B,)`` weight ``w`` of ``P``.
        product: ``(B,)`` 1 where the rule is the product, else 0.
        matching: ``(B, 1, H, W)`` scaled prompt-matching map ``M``, or ``None`` without prompt matching.
        matching_weight: ``(B,)`` weight ``w_M`` of ``M`` (with ``matching``).
        geometric: ``(B,)`` 1 where the rule is the geometric mean, else 0 (``None``: 0 for every image).

    Returns:
        ``(B, 1, H, W)`` fused map, >= 0.
    """
    weight = segmentation_weight.view(-1, 1, 1, 1)
    product = product.view(-1, 1, 1, 1)
    total = weight * probability + (1 - weight) * distance
    if matching is not None and matching_weight is not None:
        total = total + matching_weight.view(-1, 1, 1, 1) * (matching - distance)
    # arithmetic blends rather than torch.where: one graph for every rule, exported without control flow
    fused = product * distance * probability + (1 - product) * total
    if geometric is None:
        return fused
    log_distance = torch.log(distance.clamp_min(GEOMETRIC_FLOOR))
    log_mean = log_distance + weight * (torch.log(probability.clamp_min(GEOMETRIC_FLOOR)) - log_distance)
    if matching is not None and matching_weight is not None:
        log_matching = torch.log(matching.clamp_min(GEOMETRIC_FLOOR))
        log_mean = log_mean + matching_weight.view(-1, 1, 1, 1) * (log_matching - log_distance)
    return fused + geometric.view(-1, 1, 1, 1) * (torch.exp(log_mean) - fused)


class SeparableGaussianBlur(nn.Module):
    """anomalib's ``GaussianBlur2d`` (same kernel size, normalised kernel, reflect padding) as two 1-D passes.

    A 2-D Gaussian kernel is the outer product of two 1-D ones, so a row pass then a column pass gives the same
    map with ``2 k`` multiply-adds per pixel instead of ``k^2``: at sigma 4 (``k = 33``) the 2-D convolution was
    47 ms of a 256 px batch of 8 on 2 CPU cores, 11 % of PromptMAD's whole forward.

    Args:
        sigma: Standard deviation in pixels.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        size = compute_kernel_size(sigma)
        offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
        # not saved: it follows from sigma, and checkpoints stay loadable if the implementation changes
        self.register_buffer("kernel", (kernel / kernel.sum()).view(1, 1, 1, size), persistent=False)
        self.kernel: torch.Tensor
        self.padding = size // 2

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Blur ``(B, 1, H, W)`` maps; the output has the input's shape."""
        padded = F.pad(maps, (self.padding,) * 4, mode="reflect")
        rows = F.conv2d(padded, self.kernel)
        return F.conv2d(rows, self.kernel.transpose(-1, -2))


class AnomalyMapGenerator(nn.Module):
    """Build anomaly maps and image scores.

    Args:
        pool_size: Average-pool window for the image score (OneNIP: 16).
        matching_sigma: Gaussian smoothing of the prompt-matching map at the image size (Patchcore's 4).
    """

    def __init__(self, pool_size: int = 16, matching_sigma: float = 4.0) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.matching_blur = SeparableGaussianBlur(matching_sigma)

    @staticmethod
    def upsample(values: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Bilinear upsampling of a strided map to the image size, registered to the pixel.

        ``align_corners=False`` puts the value of grid cell ``i`` (stride ``s``) at pixel ``s * i + (s - 1) / 2``,
        the centre of the pixels it was computed from, at every stride: maps of different strides line up.
        """
        return F.interpolate(values, size=image_size, mode="bilinear", align_corners=False)

    def component_maps(
        self,
        distance: torch.Tensor,
        scale: torch.Tensor,
        pixel_logits: torch.Tensor,
        image_size: tuple[int, int],
        matching: torch.Tensor | None = None,
        matching_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Bring the maps to the image size: the scaled distance ``D``, the probability ``P`` and the scaled ``M``.

        Args:
            distance: ``(B, 1, h, w)`` L2 distance between reconstruction and features.
            scale: ``(B,)`` per-image distance scale (that of its inferred category).
            pixel_logits: ``(B, 1, H', W')`` pixel-head logits.
            image_size: Output ``(H, W)``.
            matching: ``(B, 1, h', w')`` prompt-matching distances, or ``None``.
            matching_scale: ``(B,)`` their per-image scale (with ``matching``).

        Returns:
            ``(D, P, M)``, each ``(B, 1, H, W)``; ``M`` is ``None`` without ``matching``.
        """
        scaled = self.upsample(distance, image_size) / scale.view(-1, 1, 1, 1)
        probability = torch.sigmoid(self.upsample(pixel_logits, image_size))
        matched = None
        if matching is not None and matching_scale is not None:
            matched = self.smoothed_matching(matching, image_size) / matching_scale.view(-1, 1, 1, 1)
        return scaled, probability, matched

    def smoothed_matching(self, matching: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Unscaled ``M`` at the image size: upsampled, then Gaussian-smoothed (its scale is measured on this)."""
        return self.matching_blur(self.upsample(matching, image_size))

    def forward(
        self,
        distance: torch.Tensor,
        probability: torch.Tensor,
        segmentation_weight: torch.Tensor,
        product: torch.Tensor,
        matching: torch.Tensor | None = None,
        matching_weight: torch.Tensor | None = None,
        image_threshold: torch.Tensor | None = None,
        pixel_threshold: torch.Tensor | None = None,
        geometric: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the component maps with each image's rule (see :func:`fuse_maps`) and score the image.

        Args:
            distance: ``(B, 1, H, W)`` scaled distance map ``D``.
            probability: ``(B, 1, H, W)`` pixel-head probability ``P``.
            segmentation_weight: ``(B,)`` weight of ``P`` in each image's rule.
            product: ``(B,)`` 1 where the rule is ``D * P``.
            matching: ``(B, 1, H, W)`` scaled prompt-matching map ``M``, or ``None``.
            matching_weight: ``(B,)`` weight of ``M`` (with ``matching``).
            image_threshold: ``(B,)`` fused image score at each image's category threshold (default 1).
            pixel_threshold: ``(B,)`` fused pixel value at each image's category threshold (default 1).
            geometric: ``(B,)`` 1 where the rule is the weighted geometric mean (``None``: none is).

        Returns:
            ``(anomaly_map, pred_score)``: ``(B, 1, H, W)`` and ``(B,)``, both in [0, 1), 0.5 at the threshold.
        """
        fused = fuse_maps(distance, probability, segmentation_weight, product, matching, matching_weight, geometric)
        window = min(self.pool_size, fused.shape[-2], fused.shape[-1])
        # separable box filter: the same mean as a window x window average pool, in O(2 window) per pixel
        pooled = F.avg_pool2d(F.avg_pool2d(fused, (window, 1), stride=1), (1, window), stride=1)
        score = pooled.flatten(1).amax(dim=1)
        if image_threshold is not None:
            score = score / image_threshold
        if pixel_threshold is not None:
            fused = fused / pixel_threshold.view(-1, 1, 1, 1)
        return fused / (1 + fused), score / (1 + score)
