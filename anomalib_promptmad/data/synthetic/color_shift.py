# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Colour shifts: a blob of the object whose hue, saturation and brightness changed (discolouration).

Hue rotation alone leaves grey objects grey, so a colour tint is multiplied in as well: a white pill turns
yellowish or pink, a dark case brownish. The region has a soft edge, as stains do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.transforms.v2 import functional as TF  # noqa: N812

from anomalib_promptmad.data.synthetic.placement import (
    DEFAULT_CHANGE_THRESHOLD,
    irregular_blobs,
    label_changes,
    sample_points,
)

__all__ = ["color_shift"]


def color_shift(
    images: torch.Tensor,
    generator: torch.Generator,
    foreground: torch.Tensor | None = None,
    radius_range: tuple[float, float] = (0.05, 0.18),
    hue_range: tuple[float, float] = (0.05, 0.5),
    tint_range: tuple[float, float] = (0.15, 0.45),
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discolour a blob of the foreground.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image).
        radius_range: Blob semi-axes as fractions of the shorter side.
        hue_range: Magnitude of the hue rotation (fraction of a turn), sign drawn at random.
        tint_range: Strength of the multiplicative colour tint.
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels.
    """
    count, _, height, width = images.shape
    centres = sample_points(count, height, width, generator, foreground)
    region = irregular_blobs(centres, height, width, generator, radius_range).float()
    # a soft edge three pixels wide
    alpha = F.avg_pool2d(region, 3, stride=1, padding=1, count_include_pad=False).to(images.device, images.dtype)
    u = torch.rand(count, 8, generator=generator, device=generator.device).cpu()
    shifted = []
    for index in range(count):
        hue = (hue_range[0] + (hue_range[1] - hue_range[0]) * float(u[index, 0])) * (1 if u[index, 1] < 0.5 else -1)
        image = TF.adjust_brightness(images[index], 0.7 + 0.6 * float(u[index, 2]))
        image = TF.adjust_saturation(image, 0.3 + 2.2 * float(u[index, 3]))
        shifted.append(TF.adjust_hue(image.clamp(0.0, 1.0), max(-0.5, min(0.5, hue))))
    tint_strength = tint_range[0] + (tint_range[1] - tint_range[0]) * u[:, 4]
    tint = u[:, 5:8] * 2 - 1  # a random colour direction per image
    gains = (1 + tint_strength.view(-1, 1) * tint).view(-1, 3, 1, 1).to(images.device, images.dtype)
    target = (torch.stack(shifted) * gains).clamp(0.0, 1.0)
    out = torch.lerp(images, target, alpha)
    return label_changes(images, out, alpha > 0, foreground, threshold)
