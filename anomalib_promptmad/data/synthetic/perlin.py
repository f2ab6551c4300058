# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Batched 2D Perlin noise and Perlin anomaly masks (DRAEM style), in torch.

Each sample gets its own lattice of ``2**k_y x 2**k_x`` cells (``k`` drawn per axis), an optional
random rotation, and a binary mask where the noise exceeds a threshold. All randomness comes from the
``torch.Generator`` passed in, so the output is a pure function of the generator state.

Example:
    >>> import torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> masks = perlin_mask(4, 64, 64, generator)
    >>> masks.shape
    torch.Size([4, 1, 64, 64])
"""

from __future__ import annotations

import math

import torch

from anomalib_promptmad.data.synthetic.geometry import affine_resample, rotation_matrices

__all__ = ["perlin_mask", "perlin_noise"]


def perlin_noise(
    batch_size: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale_exponents: tuple[int, int] = (1, 5),
    rotate: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw a batch of 2D Perlin noise maps.

    Args:
        batch_size (int): Number of maps ``B``.
        height (int): Map height ``H`` in pixels.
        width (int): Map width ``W`` in pixels.
        generator (torch.Generator): Source of all randomness.
        scale_exponents (tuple[int, int]): Inclusive range of ``k``; each axis of each sample has
            ``2**k`` lattice cells across the image. Defaults to ``(1, 5)``.
        rotate (bool): Rotate each map by a random angle in [-90, 90] degrees (outside corners
            become 0). Defaults to ``True``.
        device (torch.device | str | None): Device of the output. Defaults to the generator's device.

    Returns:
        torch.Tensor: Noise of shape ``(B, H, W)``, values roughly in [-0.8, 0.8].
    """
    low, high = scale_exponents
    if not 0 <= low <= high:
        msg = f"scale_exponents must satisfy 0 <= low <= high, got {scale_exponents}"
        raise ValueError(msg)
    device = torch.device(device) if device is not None else generator.device
    exponents = torch.randint(low, high + 1, (batch_size, 2), generator=generator, device=generator.device)
    noise = torch.stack(
        [
            _perlin_single(height, width, 2 ** int(ky), 2 ** int(kx), generator).to(device)
            for ky, kx in exponents.tolist()
        ]
    )
    if rotate and batch_size > 0:
        angles = (torch.rand(batch_size, generator=generator, device=generator.device) * 180.0 - 90.0).to(device)
        noise = affine_resample(noise.unsqueeze(1), rotation_matrices(angles)).squeeze(1)
    return noise


def perlin_mask(
    batch_size: int,
    height: int,
    width: int,
    generator: torch.Generator,
    scale_exponents: tuple[int, int] = (1, 5),
    threshold: float = 0.5,
    rotate: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Binary anomaly masks from thresholded Perlin noise (may be empty; callers resample).

    Args:
        batch_size (int): Number of masks ``B``.
        height (int): Mask height ``H``.
        width (int): Mask width ``W``.
        generator (torch.Generator): Source of all randomness.
        scale_exponents (tuple[int, int]): Inclusive range of the per-axis scale exponent ``k``.
            Defaults to ``(1, 5)``.
        threshold (float): Noise level above which a pixel is anomalous. Defaults to ``0.5``.
        rotate (bool): Randomly rotate the noise. Defaults to ``True``.
        device (torch.device | str | None): Output device. Defaults to the generator's device.

    Returns:
        torch.Tensor: Float masks of shape ``(B, 1, H, W)`` with values in {0, 1}.
    """
    noise = perlin_noise(batch_size, height, width, generator, scale_exponents, rotate, device)
    return (noise > threshold).unsqueeze(1).float()


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic fade curve ``6t^5 - 15t^4 + 10t^3``."""
    return t * t * t * (t * (t * 6 - 15) + 10)


def _perlin_single(height: int, width: int, cells_y: int, cells_x: int, generator: torch.Generator) -> torch.Tensor:
    """One ``(H, W)`` Perlin map over a ``cells_y x cells_x`` gradient lattice (on the generator's device)."""
    device = generator.device
    step_y, step_x = math.ceil(height / cells_y), math.ceil(width / cells_x)
    angles = 2 * math.pi * torch.rand(cells_y + 1, cells_x + 1, generator=generator, device=device)
    # Gradients as (cells_y + 1, 1, cells_x + 1, 1) so that they broadcast over the pixels of each cell:
    # the canvas is laid out as (cells_y, step_y, cells_x, step_x) without materialising repeats.
    grad_y = torch.cos(angles)[:, None, :, None]
    grad_x = torch.sin(angles)[:, None, :, None]
    ly = (torch.arange(step_y, device=device, dtype=torch.float32) / step_y)[None, :, None, None]
    lx = (torch.arange(step_x, device=device, dtype=torch.float32) / step_x)[None, None, None, :]

    def dot(dy: int, dx: int) -> torch.Tensor:
        gy = grad_y[dy : dy + cells_y, :, dx : dx + cells_x]
        gx = grad_x[dy : dy + cells_y, :, dx : dx + cells_x]
        return (ly - dy) * gy + (lx - dx) * gx

    ty, tx = _fade(ly), _fade(lx)
    n0 = torch.lerp(dot(0, 0), dot(1, 0), ty)
    n1 = torch.lerp(dot(0, 1), dot(1, 1), ty)
    noise = math.sqrt(2) * torch.lerp(n0, n1, tx)
    # Lattice cells tile whole pixels: the padded canvas is cropped to the image.
    return noise.reshape(cells_y * step_y, cells_x * step_x)[:height, :width]
