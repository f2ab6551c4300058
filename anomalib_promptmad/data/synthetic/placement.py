# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Where a synthetic defect goes and which pixels it labels: shared by every defect family.

* :func:`sample_points` draws one location per image, uniformly on its foreground (the whole image when
  there is none), so that defects of object categories land on the object.
* :func:`irregular_blobs` makes organic region shapes: ellipses whose boundary is perturbed by Perlin noise.
* :func:`label_changes` turns a family's *region* into the label: only pixels inside the foreground whose
  colour visibly changed (``max_c |anomalous - original| > threshold``) are anomalous, and every other
  pixel is reset to the original, so "mask 0" still means "pixel unchanged". Pasting background onto
  background, or a texture that happens to match, is no longer labelled a defect.
"""

from __future__ import annotations

import math

import torch

from anomalib_promptmad.data.synthetic.perlin import perlin_noise

__all__ = ["DEFAULT_CHANGE_THRESHOLD", "changed_pixels", "irregular_blobs", "label_changes", "sample_points"]

# A change of 10/255 in some channel: below what a person sees as a defect on most MVTec images, above
# 8-bit rounding and the sensor noise of a re-photographed patch.
DEFAULT_CHANGE_THRESHOLD = 0.04


def changed_pixels(
    before: torch.Tensor,
    after: torch.Tensor,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> torch.Tensor:
    """``(N, 1, H, W)`` bool: pixels whose largest channel change exceeds ``threshold``.

    Args:
        before: ``(N, 3, H, W)`` original images.
        after: ``(N, 3, H, W)`` modified images.
        threshold: Per-pixel change (in [0, 1] intensity units) a pixel must exceed to count as changed.
    """
    return (after - before).abs().amax(dim=1, keepdim=True) > threshold


def label_changes(
    before: torch.Tensor,
    after: torch.Tensor,
    region: torch.Tensor,
    foreground: torch.Tensor | None = None,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep a family's change only where it is inside its region, on the foreground and visible.

    Args:
        before: ``(N, 3, H, W)`` original images.
        after: ``(N, 3, H, W)`` images as the family made them.
        region: ``(N, 1, H, W)`` where the family meant to change the image (bool or {0, 1}).
        foreground: ``(N, 1, H, W)`` bool, or ``None`` for the whole image.
        threshold: See :func:`changed_pixels`.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` images equal to ``before`` wherever the ``(N, 1, H, W)`` float
        mask is 0, and masks of exactly the visibly changed pixels.
    """
    keep = region.bool() & changed_pixels(before, after, threshold)
    if foreground is not None:
        keep &= foreground.bool()
    return torch.where(keep, after, before), keep.to(before.dtype)


def sample_points(
    count: int,
    height: int,
    width: int,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
) -> torch.Tensor:
    """One pixel ``(y, x)`` per image, uniform over its foreground (or the whole image).

    Args:
        count: Number of images ``N``.
        height: Image height.
        width: Image width.
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None``; an image with an empty foreground samples the whole image.

    Returns:
        ``(N, 2)`` float tensor of pixel coordinates (on the generator's device's CPU copy).
    """
    u = torch.rand(count, generator=generator, device=generator.device).cpu()
    if foreground is None:
        flat = torch.ones(count, height * width, dtype=torch.bool)
    else:
        flat = foreground.reshape(count, -1).bool().cpu()
        flat = torch.where(flat.any(1, keepdim=True), flat, torch.ones_like(flat))
    cumulative = flat.long().cumsum(1)
    # the k-th foreground pixel, k = floor(u * n): inverse-CDF sampling without a per-image nonzero()
    target = (u * cumulative[:, -1]).floor().long().clamp(max=cumulative[:, -1] - 1) + 1
    index = torch.searchsorted(cumulative, target.unsqueeze(1)).squeeze(1)
    return torch.stack([(index // width).float(), (index % width).float()], dim=1)


def irregular_blobs(
    centres: torch.Tensor,
    height: int,
    width: int,
    generator: torch.Generator,
    radius_range: tuple[float, float] = (0.05, 0.15),
    roughness: float = 0.6,
) -> torch.Tensor:
    """Ellipses around ``centres`` with Perlin-perturbed boundaries (organic, blob-like defect regions).

    Args:
        centres: ``(N, 2)`` pixel coordinates ``(y, x)``.
        height: Image height.
        width: Image width.
        generator: Source of randomness.
        radius_range: Semi-axes as fractions of the shorter image side.
        roughness: Amplitude of the boundary perturbation (0: plain ellipses).

    Returns:
        ``(N, 1, H, W)`` bool regions, each containing its centre.
    """
    count = centres.shape[0]
    side = min(height, width)
    u = torch.rand(count, 3, generator=generator, device=generator.device).cpu()
    low, high = radius_range
    radii = (side * (low + (high - low) * u[:, :2])).clamp(min=1.0)
    angle = math.pi * u[:, 2]
    ys = torch.arange(height, dtype=torch.float32).view(1, -1, 1) - centres[:, 0].view(-1, 1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, -1) - centres[:, 1].view(-1, 1, 1)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    along, across = cos * ys + sin * xs, -sin * ys + cos * xs
    distance = (along / radii[:, 0].view(-1, 1, 1)) ** 2 + (across / radii[:, 1].view(-1, 1, 1)) ** 2
    noise = perlin_noise(count, height, width, generator, scale_exponents=(2, 3)).cpu() if roughness else 0.0
    inside = distance + roughness * noise <= 1.0
    inside |= distance <= 0.05  # the centre always belongs to its blob
    return inside.unsqueeze(1)
