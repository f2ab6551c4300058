# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Textures from other categories: a blob of the object shows a piece of another category's image.

In unified (multi-class) training the batch holds images of other categories: a blob cut from one of them
(at a random offset, so it is not the same place of that object) stands for contamination by foreign
material. Where no other category is at hand the synthesizer passes scrambled textures instead.
"""

from __future__ import annotations

import torch

from anomalib_promptmad.data.synthetic.placement import (
    DEFAULT_CHANGE_THRESHOLD,
    irregular_blobs,
    label_changes,
    sample_points,
)

__all__ = ["foreign_texture"]


def foreign_texture(
    images: torch.Tensor,
    generator: torch.Generator,
    donors: torch.Tensor,
    foreground: torch.Tensor | None = None,
    radius_range: tuple[float, float] = (0.05, 0.18),
    opacity_range: tuple[float, float] = (0.7, 1.0),
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend a blob of a donor image (another category) into each image's foreground.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1].
        generator: Source of randomness.
        donors: ``(N, 3, H, W)`` donor images in [0, 1], one per image.
        foreground: ``(N, 1, H, W)`` bool or ``None`` (whole image).
        radius_range: Blob semi-axes as fractions of the shorter side.
        opacity_range: Opacity of the donor inside the blob.
        threshold: Per-pixel change that counts as visible.

    Returns:
        ``(images, masks)``: ``(N, 3, H, W)`` and ``(N, 1, H, W)`` float masks of the changed pixels.
    """
    count, _, height, width = images.shape
    centres = sample_points(count, height, width, generator, foreground)
    region = irregular_blobs(centres, height, width, generator, radius_range).to(images.device)
    u = torch.rand(count, 3, generator=generator, device=generator.device).cpu()
    shifted = torch.stack([
        donor.roll((int(u[index, 0] * height), int(u[index, 1] * width)), dims=(1, 2))
        for index, donor in enumerate(donors.to(images))
    ])
    opacity = (opacity_range[0] + (opacity_range[1] - opacity_range[0]) * u[:, 2]).view(-1, 1, 1, 1).to(images)
    out = torch.where(region, torch.lerp(images, shifted, opacity), images)
    return label_changes(images, out, region, foreground, threshold)
