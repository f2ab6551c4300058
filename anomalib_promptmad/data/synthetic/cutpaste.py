# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""CutPaste anomalies (Li et al., CVPR 2021): "patch" and "scar" variants, batched, in torch.

A rectangle is cut from the image, colour-jittered (OneNIP's ``ColorJitter(0.4, 0.4, 0.4, 0.1)`` by
default), optionally rotated, and pasted at another location of the same image (on the foreground when
one is given). The returned mask is the set of overwritten pixels whose colour visibly changed
(``threshold``): background pasted onto background is not a defect. Pixels outside the mask are unchanged
bit for bit.

Example:
    >>> import torch
    >>> images = torch.rand(2, 3, 64, 64)
    >>> out, masks = cutpaste_patch(images, torch.Generator().manual_seed(0))
    >>> bool(((out != images).any(1, keepdim=True) == masks.bool()).all())
    True
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as TF  # noqa: N812

from anomalib_promptmad.data.synthetic.placement import DEFAULT_CHANGE_THRESHOLD, label_changes, sample_points

__all__ = ["ColorJitterParams", "cutpaste_patch", "cutpaste_scar", "paste_rectangle"]

# Sizes of CutPaste-scar are defined at this image side and scaled with the real one.
_SCAR_REFERENCE_SIZE = 256


class ColorJitterParams:
    """Ranges of the colour jitter applied to a cut rectangle.

    The defaults are OneNIP's reference ``ColorJitter(0.4, 0.4, 0.4, 0.1)``; the CutPaste paper used 0.1 for
    all four, which leaves most pasted patches indistinguishable from what they cover.

    Args:
        brightness (float): Brightness factor drawn from ``[1 - b, 1 + b]``. Defaults to ``0.4``.
        contrast (float): Contrast factor drawn from ``[1 - c, 1 + c]``. Defaults to ``0.4``.
        saturation (float): Saturation factor drawn from ``[1 - s, 1 + s]``. Defaults to ``0.4``.
        hue (float): Hue shift drawn from ``[-h, h]`` (fraction of a turn, at most 0.5). Defaults to ``0.1``.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def apply(self, patch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Jitter one ``(3, h, w)`` patch in [0, 1]; returns a patch of the same shape in [0, 1]."""
        u = torch.rand(4, generator=generator, device=generator.device).tolist()
        patch = TF.adjust_brightness(patch, 1.0 + self.brightness * (2 * u[0] - 1))
        patch = TF.adjust_contrast(patch, 1.0 + self.contrast * (2 * u[1] - 1))
        patch = TF.adjust_saturation(patch, 1.0 + self.saturation * (2 * u[2] - 1))
        if self.hue > 0:
            patch = TF.adjust_hue(patch, self.hue * (2 * u[3] - 1))
        return patch.clamp(0.0, 1.0)


def paste_rectangle(
    image: torch.Tensor,
    patch: torch.Tensor,
    centre: tuple[float, float],
    angle_deg: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``patch`` into ``image`` centred at ``centre``, rotated by ``angle_deg`` (nearest neighbour).

    Each output pixel inside the rotated rectangle takes the patch pixel it maps back to, so the mask
    is exact: the image changes only where the mask is 1. With ``angle_deg == 0`` and a centre at
    ``top + h / 2, left + w / 2`` this is plain slice assignment.

    Args:
        image (torch.Tensor): Image of shape ``(3, H, W)``; not modified.
        patch (torch.Tensor): Patch of shape ``(3, h, w)``.
        centre (tuple[float, float]): Centre ``(y, x)`` of the pasted rectangle in pixel coordinates.
        angle_deg (float): Rotation in degrees. Defaults to ``0.0``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: The new image ``(3, H, W)`` and its mask ``(1, H, W)``
        (float, values in {0, 1}).
    """
    _, height, width = image.shape
    _, patch_h, patch_w = patch.shape
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    half_y = (abs(patch_h * cos) + abs(patch_w * sin)) / 2
    half_x = (abs(patch_w * cos) + abs(patch_h * sin)) / 2
    cy, cx = centre
    top, bottom = max(0, math.floor(cy - half_y) - 1), min(height, math.ceil(cy + half_y) + 1)
    left, right = max(0, math.floor(cx - half_x) - 1), min(width, math.ceil(cx + half_x) + 1)

    ys = torch.arange(top, bottom, device=image.device, dtype=torch.float32) - cy
    xs = torch.arange(left, right, device=image.device, dtype=torch.float32) - cx
    dy, dx = torch.meshgrid(ys, xs, indexing="ij")
    # Inverse rotation: output offset -> patch coordinates (origin at the patch's top-left corner).
    py = torch.floor(cos * dy + sin * dx + patch_h / 2).long()
    px = torch.floor(-sin * dy + cos * dx + patch_w / 2).long()
    inside = (py >= 0) & (py < patch_h) & (px >= 0) & (px < patch_w)

    out = image.clone()
    mask = torch.zeros(1, height, width, dtype=image.dtype, device=image.device)
    window = out[:, top:bottom, left:right]
    values = patch[:, py.clamp(0, patch_h - 1), px.clamp(0, patch_w - 1)]
    window[:, inside] = values[:, inside]
    mask[0, top:bottom, left:right] = inside.to(image.dtype)
    return out, mask


def cutpaste_patch(
    images: torch.Tensor,
    generator: torch.Generator,
    area_range: tuple[float, float] = (0.02, 0.15),
    aspect_range: tuple[float, float] = (0.3, 3.3),
    jitter: ColorJitterParams | None = None,
    foreground: torch.Tensor | None = None,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutPaste "patch": a rectangle of random area and aspect ratio, jittered, pasted elsewhere.

    Args:
        images (torch.Tensor): Images of shape ``(B, 3, H, W)`` in [0, 1].
        generator (torch.Generator): Source of all randomness.
        area_range (tuple[float, float]): Patch area as a fraction of the image. Defaults to ``(0.02, 0.15)``.
        aspect_range (tuple[float, float]): Range of ``h / w``, drawn log-uniformly. Defaults to ``(0.3, 3.3)``.
        jitter (ColorJitterParams | None): Colour jitter of the patch. Defaults to OneNIP's (0.4, 0.4, 0.4, 0.1).
        foreground (torch.Tensor | None): ``(B, 1, H, W)`` bool: the patch is centred on a foreground pixel and
            only its part on the foreground is kept. ``None``: anywhere in the image.
        threshold (float): Per-pixel change that counts as visible (0 labels every changed pixel).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Images ``(B, 3, H, W)`` and float masks ``(B, 1, H, W)`` of the
        visibly changed pixels (empty if the paste changed nothing).
    """
    jitter = jitter or ColorJitterParams()
    _, _, height, width = images.shape
    centres = sample_points(len(images), height, width, generator, foreground) if foreground is not None else None
    outputs, masks = [], []
    for index, image in enumerate(images):
        u = torch.rand(6, generator=generator, device=generator.device).tolist()
        area = (area_range[0] + (area_range[1] - area_range[0]) * u[0]) * height * width
        log_lo, log_hi = math.log(aspect_range[0]), math.log(aspect_range[1])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        patch_h = min(height, max(1, round(math.sqrt(area * aspect))))
        patch_w = min(width, max(1, round(math.sqrt(area / aspect))))
        src_top = math.floor(u[2] * (height - patch_h + 1))
        src_left = math.floor(u[3] * (width - patch_w + 1))
        dst_top = math.floor(u[4] * (height - patch_h + 1))
        dst_left = math.floor(u[5] * (width - patch_w + 1))
        if centres is not None:  # the foreground pixel, moved inwards just enough to keep the patch inside
            dst_top = min(max(0, round(float(centres[index, 0]) - patch_h / 2)), height - patch_h)
            dst_left = min(max(0, round(float(centres[index, 1]) - patch_w / 2)), width - patch_w)
        patch = jitter.apply(image[:, src_top : src_top + patch_h, src_left : src_left + patch_w], generator)
        out, mask = paste_rectangle(image, patch, (dst_top + patch_h / 2, dst_left + patch_w / 2))
        outputs.append(out)
        masks.append(mask)
    return label_changes(images, torch.stack(outputs), torch.stack(masks), foreground, threshold)


def cutpaste_scar(
    images: torch.Tensor,
    generator: torch.Generator,
    width_range: tuple[float, float] = (2, 16),
    height_range: tuple[float, float] = (10, 25),
    angle_range: tuple[float, float] = (-45.0, 45.0),
    jitter: ColorJitterParams | None = None,
    foreground: torch.Tensor | None = None,
    threshold: float = DEFAULT_CHANGE_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutPaste "scar": a thin rectangle, jittered, rotated and pasted elsewhere.

    Args:
        images (torch.Tensor): Images of shape ``(B, 3, H, W)`` in [0, 1].
        generator (torch.Generator): Source of all randomness.
        width_range (tuple[float, float]): Scar width in pixels at a 256-pixel image side (scaled with
            the real side). Defaults to ``(2, 16)``.
        height_range (tuple[float, float]): Scar length in pixels at a 256-pixel side. Defaults to ``(10, 25)``.
        angle_range (tuple[float, float]): Rotation range in degrees. Defaults to ``(-45, 45)``.
        jitter (ColorJitterParams | None): Colour jitter of the scar. Defaults to OneNIP's (0.4, 0.4, 0.4, 0.1).
        foreground (torch.Tensor | None): ``(B, 1, H, W)`` bool: the scar is centred on a foreground pixel and
            only its part on the foreground is kept. ``None``: anywhere in the image.
        threshold (float): Per-pixel change that counts as visible (0 labels every changed pixel).

    Returns:
        tuple[torch.Tensor, torch.Tensor]: Images ``(B, 3, H, W)`` and float masks ``(B, 1, H, W)`` of the
        visibly changed pixels (empty if the paste changed nothing).
    """
    jitter = jitter or ColorJitterParams()
    _, _, height, width = images.shape
    scale = min(height, width) / _SCAR_REFERENCE_SIZE
    centres = sample_points(len(images), height, width, generator, foreground) if foreground is not None else None
    outputs, masks = [], []
    for index, image in enumerate(images):
        u = torch.rand(7, generator=generator, device=generator.device).tolist()
        scar_w = min(width, max(1, round(scale * (width_range[0] + (width_range[1] - width_range[0]) * u[0]))))
        scar_h = min(height, max(1, round(scale * (height_range[0] + (height_range[1] - height_range[0]) * u[1]))))
        angle = angle_range[0] + (angle_range[1] - angle_range[0]) * u[2]
        src_top = math.floor(u[3] * (height - scar_h + 1))
        src_left = math.floor(u[4] * (width - scar_w + 1))
        patch = jitter.apply(image[:, src_top : src_top + scar_h, src_left : src_left + scar_w], generator)
        # Keep the rotated scar inside the image so its full length is visible.
        theta = math.radians(angle)
        half_y = (abs(scar_h * math.cos(theta)) + abs(scar_w * math.sin(theta))) / 2
        half_x = (abs(scar_w * math.cos(theta)) + abs(scar_h * math.sin(theta))) / 2
        cy = half_y + u[5] * max(0.0, height - 2 * half_y)
        cx = half_x + u[6] * max(0.0, width - 2 * half_x)
        if centres is not None:  # on the foreground pixel, moved inwards to keep the scar inside
            cy = min(max(half_y, float(centres[index, 0])), max(half_y, height - half_y))
            cx = min(max(half_x, float(centres[index, 1])), max(half_x, width - half_x))
        out, mask = paste_rectangle(image, patch, (cy, cx), angle)
        outputs.append(out)
        masks.append(mask)
    return label_changes(images, torch.stack(outputs), torch.stack(masks), foreground, threshold)
