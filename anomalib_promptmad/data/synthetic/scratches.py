# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Thin scratches and cracks: a polyline of one to five segments, one to three pixels wide (at 256 px).

A scratch is a nearly straight line; a crack turns sharply at each joint (the turning angle is drawn per
image, so both kinds come out of one family). The line starts on the foreground and is shaded darker or
brighter than what it crosses.
"""

from __future__ import annotations

import math

import torch

from anomalib_promptmad.data.synthetic.placement import DEFAULT_CHANGE_THRESHOLD, label_changes, sample_points
from anomalib_promptmad.data.synthetic.spots import shade_targets

__all__ = ["scratches"]

# widths and lengths are defined at this image side and scaled with the real one
_REFERENCE_SIDE = 256


def _segment_distance(
    ys: torch.Tensor, xs: torch.Tensor, start: tuple[float, float], end: tuple[float, float]
) -> torch.Tensor:
    """Distance of every pixel of the ``(H, W)`` grid to the segment ``start -> end``."""
    dy, dx = end[0] - start[0], end[1] - start[1]
    length2 = max(dy * dy + dx * dx, 1e-6)
    t = (((ys - start[0]) * dy + (xs - start[1]) * dx) / length2).clamp(0.0, 1.0)
    return ((ys - start[0] - t * dy) ** 2 + (xs - start[1] - t * dx) ** 2).sqrt()


def scratches(
    images: torch.Tensor,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
    length_range: tuple[float, float] = (0.08, 0.3),
    width_range: tuple[float, float] = (1.0, 3.0),
    segments_range: tuple[int, int] = (1, 5),
    max_turn_deg: float = 60.0,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin scratches or cracks on the foreground.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image).
        length_range: Total length as a fraction of the shorter side.
        width_range: Line width in pixels at a 256 px side (scaled with the side, at least one pixel).
        segments_range: Inclusive range of polyline segments.
        max_turn_deg: Largest turn at a joint; each image draws its own bound in ``[0, max_turn_deg]``.
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels.
    """
    count, _, height, width = images.shape
    side = min(height, width)
    scale = side / _REFERENCE_SIDE
    starts = sample_points(count, height, width, generator, foreground)
    target = shade_targets(images, generator, colour_share=0.0)
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    alphas = []
    for index in range(count):
        u = torch.rand(5, generator=generator, device=generator.device).tolist()
        segments = segments_range[0] + min(int(u[0] * (segments_range[1] - segments_range[0] + 1)), segments_range[1])
        total = side * (length_range[0] + (length_range[1] - length_range[0]) * u[1])
        half_width = max(0.5, scale * (width_range[0] + (width_range[1] - width_range[0]) * u[2])) / 2
        turn = math.radians(max_turn_deg) * u[3]
        angle = 2 * math.pi * u[4]
        turns = (2 * torch.rand(segments, generator=generator, device=generator.device).cpu() - 1).tolist()
        point = (float(starts[index, 0]), float(starts[index, 1]))
        distance = torch.full((height, width), float("inf"))
        for step in range(segments):
            angle += turn * turns[step]
            end = (point[0] + total / segments * math.sin(angle), point[1] + total / segments * math.cos(angle))
            distance = torch.minimum(distance, _segment_distance(ys, xs, point, end))
            point = end
        alphas.append((half_width + 0.5 - distance).clamp(0.0, 1.0))
    alpha = torch.stack(alphas).unsqueeze(1).to(images.device, images.dtype)
    out = torch.lerp(images, target, alpha).clamp(0.0, 1.0)
    return label_changes(images, out, alpha > 0, foreground, threshold)
