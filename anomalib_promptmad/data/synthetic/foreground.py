# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category object masks from normal training images, for placing synthetic defects on the object.

The estimate works on the category as a whole, at a small size (64 px by default):

1. Each pixel gets a feature: its local mean colour and local contrast (5x5 window). Contrast separates a
   dark textured object from a dark smooth background (tire), colour the rest (bottle, pill).
2. The background is what the image border looks like: a pixel is "unlike the background" when its feature
   is farther than ``tau`` from every sampled border feature. ``tau`` adapts to how varied the border is
   (four times the 95th percentile of border-to-border distances, clamped to ``[0.03, 0.15]``), so a
   copper board with holes (transistor) is still background.
3. Consensus: a pixel is foreground if it is unlike the background in at least ``consensus`` of the
   images. Textures fail this in both directions (everything, or nothing at a fixed place), objects pass.
4. Clean-up: small specks are dropped, and the convex hull of the rest is the object (it fills a bottle's
   dark centre, a pill's imprint and the gaps between a tire's treads), dilated by ``dilation``.
5. Reliability: if the hull covers less than ``min_coverage`` or more than ``max_coverage`` of the image,
   the category is treated as a texture (``None``: defects go anywhere).

Measured on the four shared real categories at 64 px from 16 images: bottle 66 % of the image (the
bottle), pill 47 % (the pill), transistor 23 % (case and upper leads), tire 35 % (the tire); uniform noise
and smooth random textures give ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from skimage.morphology import convex_hull_image, remove_small_objects

__all__ = ["category_foregrounds", "estimate_foreground", "foreground_batch"]

logger = logging.getLogger(__name__)


def _border(features: torch.Tensor, band: int) -> torch.Tensor:
    """``(K, C)`` features of the ``band``-pixel frame of ``(N, C, h, w)`` maps."""
    frames = [features[:, :, :band], features[:, :, -band:], features[:, :, :, :band], features[:, :, :, -band:]]
    return torch.cat([frame.flatten(2) for frame in frames], dim=2).permute(0, 2, 1).reshape(-1, features.shape[1])


def estimate_foreground(
    images: torch.Tensor,
    consensus: float = 0.25,
    dilation: float = 0.016,
    min_coverage: float = 0.03,
    max_coverage: float = 0.9,
    border_samples: int = 1024,
) -> torch.Tensor | None:
    """The object mask of a category from some of its normal images (see the module docstring).

    Args:
        images: ``(N, 3, h, w)`` normal images of one category in [0, 1] (e.g. 16 images at 64 px).
        consensus: Share of images in which a pixel must be unlike the background.
        dilation: Radius of the final dilation as a fraction of the shorter side (a margin for position jitter).
        min_coverage: Smallest believable object share of the image.
        max_coverage: Largest believable object share; above it the category is a texture.
        border_samples: Border features sampled as the background model.

    Returns:
        ``(h, w)`` bool mask, or ``None`` for textures and unreliable estimates.
    """
    count, _, height, width = images.shape
    images = images.float()
    mean = F.avg_pool2d(images, 5, 1, 2, count_include_pad=False)
    variance = F.avg_pool2d(images * images, 5, 1, 2, count_include_pad=False) - mean**2
    contrast = variance.clamp(min=0).sqrt().mean(1, keepdim=True)
    features = torch.cat([mean, 2 * contrast], dim=1)
    band = max(1, min(height, width) // 32)
    border = _border(features, band)
    generator = torch.Generator().manual_seed(0)
    model = border[torch.randperm(len(border), generator=generator)[:border_samples]]
    probe = border[torch.randperm(len(border), generator=generator)[: 2 * border_samples]]
    # the second-nearest: the nearest of a probe that is also in the model is itself, at distance 0
    spread = torch.cdist(probe, model).topk(min(2, len(model)), largest=False).values[:, -1]
    tau = float((4 * spread.quantile(0.95)).clamp(0.03, 0.15))
    pixels = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    distance = torch.cat([torch.cdist(chunk, model).amin(1) for chunk in pixels.split(65536)])
    unlike = (distance > tau).view(count, height, width).float().mean(0) >= consensus
    kept = remove_small_objects(unlike.numpy(), max_size=max(4, height * width // 400))
    if not kept.any():
        return None
    hull = torch.from_numpy(convex_hull_image(kept)).float()[None, None]
    # the 5x5 window spreads the object's edge contrast 2 px outwards: erode that back, then add the margin
    hull = -F.max_pool2d(-hull, 5, 1, 2)
    radius = round(dilation * min(height, width))
    if radius > 0:
        hull = F.max_pool2d(hull, 2 * radius + 1, 1, radius)
    hull = hull[0, 0] > 0
    coverage = float(hull.float().mean())
    if not min_coverage <= coverage <= max_coverage:
        return None
    return hull.bool()


def category_foregrounds(
    image_paths: Iterable[str],
    category_of: Callable[[str], str],
    images_per_category: int = 16,
    size: int = 64,
    reader: Callable[[str], torch.Tensor] | None = None,
    **estimate_kwargs: float,
) -> dict[str, torch.Tensor | None]:
    """Estimate the foreground of every category among ``image_paths`` (normal images).

    Args:
        image_paths: Paths of normal training images.
        category_of: Category name of a path.
        images_per_category: Images read per category, spread evenly over its sorted paths.
        size: Side the images are resized to for the estimate.
        reader: Reads a path as a ``(3, H, W)`` float tensor in [0, 1]; default anomalib's ``read_image``.
        **estimate_kwargs: Passed to :func:`estimate_foreground`.

    Returns:
        ``{category: (size, size) bool mask or None}``.
    """
    if reader is None:
        from anomalib.data.utils import read_image  # noqa: PLC0415 - keeps this module importable without anomalib

        def reader(path: str) -> torch.Tensor:
            return read_image(path, as_tensor=True)

    by_category: dict[str, list[str]] = {}
    for path in sorted(str(p) for p in image_paths):
        by_category.setdefault(category_of(path), []).append(path)
    estimates: dict[str, torch.Tensor | None] = {}
    for category, paths in by_category.items():
        picks = np.linspace(0, len(paths) - 1, min(images_per_category, len(paths))).round().astype(int)
        images = torch.stack([
            F.interpolate(reader(paths[i]).float()[None], size=(size, size), mode="area")[0] for i in picks
        ])
        estimates[category] = estimate_foreground(images, **estimate_kwargs)
        coverage = "none (whole image)" if estimates[category] is None else f"{estimates[category].float().mean():.0%}"
        logger.info("Synthetic-defect foreground of '%s': %s", category, coverage)
    return estimates


def foreground_batch(
    estimates: Sequence[torch.Tensor | None],
    height: int,
    width: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor | None:
    """Per-image masks ``(B, 1, height, width)`` from per-image estimates (nearest-neighbour resize).

    Args:
        estimates: One category mask (any size) or ``None`` (whole image) per image.
        height: Image height.
        width: Image width.
        device: Device of the result.

    Returns:
        Bool masks, ``None`` rows being all true; ``None`` if every estimate is ``None``.
    """
    if all(estimate is None for estimate in estimates):
        return None
    rows = [
        torch.ones(1, height, width, dtype=torch.bool)
        if estimate is None
        else F.interpolate(estimate.float()[None, None], size=(height, width), mode="nearest")[0] > 0.5
        for estimate in estimates
    ]
    return torch.stack(rows).to(device)
