# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Missing and misplaced parts of an object (broken bottle rims, cut leads, shifted components).

* :func:`missing_part`: a blob of the object is replaced by background: the image's median background
  colour with the background's own per-channel noise, so it reads as a hole, not as a flat sticker.
* :func:`misplaced_part`: a blob of the object is moved to another place on the object; where it was,
  background shows through.

Both need a foreground: without one (textures) there is no "object" to lose a part of, and the synthesizer
does not draw them (see :data:`~anomalib_promptmad.data.synthetic.families.OBJECT_ONLY_FAMILIES`).
"""

from __future__ import annotations

import torch

from anomalib_promptmad.data.synthetic.placement import (
    DEFAULT_CHANGE_THRESHOLD,
    irregular_blobs,
    label_changes,
    sample_points,
)

__all__ = ["background_fill", "missing_part", "misplaced_part"]


def _border(count: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``(N, 1, H, W)`` bool frame of width ``max(1, side // 32)``."""
    band = max(1, min(height, width) // 32)
    frame = torch.zeros(1, 1, height, width, dtype=torch.bool, device=device)
    frame[..., :band, :] = frame[..., -band:, :] = True
    frame[..., :, :band] = frame[..., :, -band:] = True
    return frame.expand(count, 1, height, width)


def background_fill(images: torch.Tensor, generator: torch.Generator, foreground: torch.Tensor | None) -> torch.Tensor:
    """What a hole in the object looks like: background colour plus background-like noise.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool; the background is its complement (the image border where it is
            ``None`` or covers everything).

    Returns:
        ``(N, 3, H, W)`` fill images in [0, 1].
    """
    count, _, height, width = images.shape
    background = _border(count, height, width, images.device)
    if foreground is not None:
        outside = ~foreground.bool()
        background = torch.where(outside.flatten(1).any(1).view(-1, 1, 1, 1), outside, background)
    fills = []
    for index in range(count):
        pixels = images[index][:, background[index, 0]]  # (3, K)
        median = pixels.median(dim=1).values.view(3, 1, 1)
        spread = pixels.std(dim=1).nan_to_num(0.0).clamp(max=0.1).view(3, 1, 1)
        noise = torch.randn(1, height, width, generator=generator, device=generator.device).to(images)
        fills.append(median + spread * noise)
    return torch.stack(fills).clamp(0.0, 1.0)


def _shift(tensor: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``tensor`` ``(C, H, W)`` moved by ``(dy, dx)`` pixels; what enters from outside is zero."""
    out = torch.zeros_like(tensor)
    _, height, width = tensor.shape
    src_y, dst_y = slice(max(0, -dy), min(height, height - dy)), slice(max(0, dy), min(height, height + dy))
    src_x, dst_x = slice(max(0, -dx), min(width, width - dx)), slice(max(0, dx), min(width, width + dx))
    out[:, dst_y, dst_x] = tensor[:, src_y, src_x]
    return out


def missing_part(
    images: torch.Tensor,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
    radius_range: tuple[float, float] = (0.05, 0.15),
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a blob of the object by background.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image; the border stands for the background).
        radius_range: Blob semi-axes as fractions of the shorter side.
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels.
    """
    count, _, height, width = images.shape
    centres = sample_points(count, height, width, generator, foreground)
    region = irregular_blobs(centres, height, width, generator, radius_range).to(images.device)
    out = torch.where(region, background_fill(images, generator, foreground), images)
    return label_changes(images, out, region, foreground, threshold)


def misplaced_part(
    images: torch.Tensor,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
    radius_range: tuple[float, float] = (0.04, 0.12),
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a blob of the object to another place on the object; background fills where it was.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image).
        radius_range: Blob semi-axes as fractions of the shorter side.
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels
        (the vacated place and the part's new place).
    """
    count, _, height, width = images.shape
    sources = sample_points(count, height, width, generator, foreground)
    targets = sample_points(count, height, width, generator, foreground)
    region = irregular_blobs(sources, height, width, generator, radius_range).to(images.device)
    if foreground is not None:
        region &= foreground.bool()  # the part is a piece of the object, not of the background around it
    out = torch.where(region, background_fill(images, generator, foreground), images)
    moved_regions = []
    for index in range(count):
        dy, dx = (targets[index] - sources[index]).round().long().tolist()
        piece_region = _shift(region[index], dy, dx)
        piece = _shift(images[index], dy, dx)
        out[index] = torch.where(piece_region, piece, out[index])
        moved_regions.append(piece_region)
    region = region | torch.stack(moved_regions)
    return label_changes(images, out, region, foreground, threshold)
