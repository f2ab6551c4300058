# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Small spots: dark, bright or coloured dots (contamination, stains, "color" defects of pills).

One to four small soft-edged discs per image, each centred on the foreground, blended toward a darker,
brighter or random colour. Only the pixels that visibly changed are labelled (see
:func:`~anomalib_promptmad.data.synthetic.placement.label_changes`).
"""

from __future__ import annotations

import torch

from anomalib_promptmad.data.synthetic.placement import DEFAULT_CHANGE_THRESHOLD, label_changes, sample_points

__all__ = ["shade_targets", "spots"]


def shade_targets(images: torch.Tensor, generator: torch.Generator, colour_share: float = 0.3) -> torch.Tensor:
    """Per image, what a defect pixel turns into: darker, brighter or a random colour.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        colour_share: Share of images whose target is a random flat colour (the rest: 60 % darker, 40 % brighter).

    Returns:
        ``(N, 3, H, W)`` target images in [0, 1].
    """
    count = images.shape[0]
    u = torch.rand(count, 5, generator=generator, device=generator.device).to(images.device, images.dtype)
    strength = (0.4 + 0.5 * u[:, 1]).view(-1, 1, 1, 1)
    darker = images * (1 - strength)
    brighter = images + (1 - images) * strength
    colour = u[:, 2:5].view(-1, 3, 1, 1).expand_as(images)
    mode = u[:, 0].view(-1, 1, 1, 1)
    shaded = torch.where(mode < colour_share + 0.6 * (1 - colour_share), darker, brighter)
    return torch.where(mode < colour_share, colour, shaded)


def spots(
    images: torch.Tensor,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
    count_range: tuple[int, int] = (1, 4),
    radius_range: tuple[float, float] = (0.008, 0.03),
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Small spots on the foreground.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image).
        count_range: Inclusive range of spots per image.
        radius_range: Spot radius as a fraction of the shorter side (at least one pixel).
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels.
    """
    count, _, height, width = images.shape
    side = min(height, width)
    spots_per_image = torch.randint(
        count_range[0], count_range[1] + 1, (count,), generator=generator, device=generator.device
    ).cpu()
    target = shade_targets(images, generator)
    alpha = torch.zeros(count, 1, height, width)
    ys = torch.arange(height, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, -1)
    for k in range(count_range[1]):
        centres = sample_points(count, height, width, generator, foreground)
        u = torch.rand(count, 2, generator=generator, device=generator.device).cpu()
        radius = (side * (radius_range[0] + (radius_range[1] - radius_range[0]) * u[:, 0])).clamp(min=1.0)
        distance = ((ys - centres[:, 0].view(-1, 1, 1)) ** 2 + (xs - centres[:, 1].view(-1, 1, 1)) ** 2).sqrt()
        # soft rim one pixel wide: a spot fades into its surroundings instead of having a cut-out edge
        disc = (radius.view(-1, 1, 1) + 0.5 - distance).clamp(0.0, 1.0)
        opacity = (0.6 + 0.4 * u[:, 1]).view(-1, 1, 1) * (k < spots_per_image).float().view(-1, 1, 1)
        alpha = torch.maximum(alpha, (disc * opacity).unsqueeze(1))
    alpha = alpha.to(images.device, images.dtype)
    out = torch.lerp(images, target, alpha).clamp(0.0, 1.0)
    return label_changes(images, out, alpha > 0, foreground, threshold)
