# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies for training: CutPaste or Perlin-masked texture blending (DRAEM).

For each image of a batch, :class:`AnomalySynthesizer` draws one of

* CutPaste "patch" or "scar" (with probability ``cutpaste_probability``, half each), or
* a Perlin-noise mask ``m`` and a texture ``t``, blended as
  ``x * (1 - m) + (1 - beta) * t * m + beta * x * m`` with ``beta ~ U(beta_range)``.

Textures come from a folder of images (e.g. the Describable Textures Dataset) when ``texture_dir``
is given, otherwise from the batch itself: another image (the same one when ``B == 1``), zoomed
into a random crop, flipped, rotated and colour-shifted so it no longer looks like the object. Training
therefore works offline with no extra data. Every mask is non-empty: empty Perlin masks are redrawn and,
as a last resort, replaced by a small elliptical blob.

Example:
    >>> import torch
    >>> synthesizer = AnomalySynthesizer()
    >>> images = torch.rand(8, 3, 64, 64)
    >>> anomalous, masks = synthesizer(images, torch.Generator().manual_seed(0))
    >>> anomalous.shape, masks.shape
    (torch.Size([8, 3, 64, 64]), torch.Size([8, 1, 64, 64]))
    >>> bool((masks.flatten(1).amax(1) == 1).all())
    True
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anomalib_promptmad.data.synthetic.cutpaste import ColorJitterParams, cutpaste_patch, cutpaste_scar
from anomalib_promptmad.data.synthetic.geometry import affine_resample, rotation_matrices
from anomalib_promptmad.data.synthetic.perlin import perlin_mask

__all__ = ["TEXTURE_EXTENSIONS", "AnomalySynthesizer", "TextureFolder"]

TEXTURE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})


class TextureFolder:
    """Texture images found recursively under a folder, loaded at a requested size with a small cache.

    Args:
        root (str | Path): Folder searched recursively for ``.jpg``, ``.jpeg`` and ``.png`` files.
        cache_size (int): Number of decoded, resized textures kept in memory. Defaults to ``256``
            (about 50 MB at 256 x 256).

    Raises:
        FileNotFoundError: If ``root`` is not a folder or holds no image.
    """

    def __init__(self, root: str | Path, cache_size: int = 256) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            msg = f"texture_dir '{self.root}' is not a folder. Point it at a folder of .jpg/.png textures (e.g. DTD)."
            raise FileNotFoundError(msg)
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in TEXTURE_EXTENSIONS and p.is_file())
        if not self.paths:
            msg = (
                f"texture_dir '{self.root}' contains no .jpg/.jpeg/.png image (searched recursively). "
                "Point it at a texture folder such as DTD's 'images', or pass texture_dir=None to derive "
                "textures from the training images."
            )
            raise FileNotFoundError(msg)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, height: int, width: int) -> torch.Tensor:
        """Texture ``index`` resized to ``(height, width)``, as a float tensor ``(3, H, W)`` in [0, 1]."""
        key = (index, height, width)
        cached = self._cache.get(key)
        if cached is None:
            with Image.open(self.paths[index]) as image:
                # JPEG draft mode decodes at a reduced scale: several times faster for large textures.
                image.draft("RGB", (width, height))
                image = image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
                cached = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()
            self._cache[key] = cached
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cached.float() / 255.0


class AnomalySynthesizer:
    """Turn a batch of normal images into anomalous images with exact masks.

    Args:
        cutpaste_probability (float): Probability of CutPaste (patch or scar, half each) per image; the
            rest get Perlin texture blending. Defaults to ``0.5``.
        texture_dir (str | Path | None): Folder of texture images (searched recursively). ``None`` derives
            textures from the batch itself. Defaults to ``None``.
        beta_range (tuple[float, float]): Range of the opacity ``beta`` of the original image inside the
            Perlin mask (0: texture only). Defaults to ``(0.0, 0.8)``.
        perlin_scale_exponents (tuple[int, int]): Inclusive range of ``k`` for ``2**k`` Perlin cells per
            axis. Defaults to ``(1, 5)``.
        perlin_threshold (float): Noise threshold of the Perlin mask. Defaults to ``0.5``.
        perlin_attempts (int): Draws of a Perlin mask before falling back to a blob. Defaults to ``4``.
        jitter (ColorJitterParams | None): CutPaste colour jitter. Defaults to 0.1 for all four.

    Raises:
        ValueError: If a probability or range is invalid.
        FileNotFoundError: If ``texture_dir`` is given but holds no image.
    """

    def __init__(
        self,
        cutpaste_probability: float = 0.5,
        texture_dir: str | Path | None = None,
        beta_range: tuple[float, float] = (0.0, 0.8),
        perlin_scale_exponents: tuple[int, int] = (1, 5),
        perlin_threshold: float = 0.5,
        perlin_attempts: int = 4,
        jitter: ColorJitterParams | None = None,
    ) -> None:
        if not 0.0 <= cutpaste_probability <= 1.0:
            msg = f"cutpaste_probability must be in [0, 1], got {cutpaste_probability}"
            raise ValueError(msg)
        if not 0.0 <= beta_range[0] <= beta_range[1] <= 1.0:
            msg = f"beta_range must satisfy 0 <= low <= high <= 1, got {beta_range}"
            raise ValueError(msg)
        if perlin_attempts < 1:
            msg = f"perlin_attempts must be >= 1, got {perlin_attempts}"
            raise ValueError(msg)
        self.cutpaste_probability = cutpaste_probability
        self.textures = TextureFolder(texture_dir) if texture_dir is not None else None
        self.beta_range = beta_range
        self.perlin_scale_exponents = perlin_scale_exponents
        self.perlin_threshold = perlin_threshold
        self.perlin_attempts = perlin_attempts
        self.jitter = jitter or ColorJitterParams()

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesise one anomaly per image.

        Args:
            images (torch.Tensor): Normal images of shape ``(B, 3, H, W)`` with values in [0, 1].
            generator (torch.Generator): Source of all randomness (any device); same state, same output.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: Anomalous images ``(B, 3, H, W)`` in [0, 1] and float
            masks ``(B, 1, H, W)`` with values in {0, 1}, each with at least one anomalous pixel. Pixels
            where the mask is 0 equal the input.

        Raises:
            ValueError: If ``images`` is not ``(B, 3, H, W)`` in [0, 1].
        """
        if images.ndim != 4 or images.shape[1] != 3:
            msg = f"images must have shape (B, 3, H, W), got {tuple(images.shape)}"
            raise ValueError(msg)
        if images.numel() and (images.min() < 0 or images.max() > 1):
            msg = "images must be in [0, 1] (un-normalised); apply the synthesizer before mean/std normalisation"
            raise ValueError(msg)
        batch_size = images.shape[0]
        draws = torch.rand(batch_size, 2, generator=generator, device=generator.device).cpu()
        use_cutpaste = draws[:, 0] < self.cutpaste_probability
        use_scar = draws[:, 1] < 0.5

        out = images.clone()
        masks = torch.zeros(batch_size, 1, *images.shape[-2:], dtype=images.dtype, device=images.device)
        for indices, method in (
            (use_cutpaste & ~use_scar, self._cutpaste_patch),
            (use_cutpaste & use_scar, self._cutpaste_scar),
            (~use_cutpaste, self._perlin_blend),
        ):
            selected = indices.nonzero().flatten().tolist()
            if selected:
                out[selected], masks[selected] = method(images, selected, generator)
        return out, masks

    def _cutpaste_patch(
        self,
        images: torch.Tensor,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return cutpaste_patch(images[selected], generator, jitter=self.jitter)

    def _cutpaste_scar(
        self,
        images: torch.Tensor,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return cutpaste_scar(images[selected], generator, jitter=self.jitter)

    def _perlin_blend(
        self,
        images: torch.Tensor,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DRAEM blending of a texture into the images ``selected`` through non-empty Perlin masks."""
        _, _, height, width = images.shape
        masks = self._non_empty_perlin_masks(len(selected), height, width, generator).to(images.device)
        textures = self._textures(images, selected, generator)
        low, high = self.beta_range
        beta = (low + (high - low) * torch.rand(len(selected), generator=generator, device=generator.device)).to(
            images.device,
        )
        beta = beta.view(-1, 1, 1, 1).to(images.dtype)
        x = images[selected]
        # With a binary mask, x * (1 - m) + (1 - beta) * t * m + beta * x * m is exactly this selection,
        # which also leaves pixels outside the mask bit-identical.
        blended = torch.where(masks.bool(), torch.lerp(textures, x, beta).clamp(0.0, 1.0), x)
        return blended, masks

    def _non_empty_perlin_masks(self, count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
        masks = torch.zeros(count, 1, height, width, device=generator.device)
        missing = list(range(count))
        for _ in range(self.perlin_attempts):
            drawn = perlin_mask(
                len(missing),
                height,
                width,
                generator,
                scale_exponents=self.perlin_scale_exponents,
                threshold=self.perlin_threshold,
            )
            filled = drawn.flatten(1).amax(1) > 0
            masks[[i for i, ok in zip(missing, filled.tolist(), strict=True) if ok]] = drawn[filled]
            missing = [i for i, ok in zip(missing, filled.tolist(), strict=True) if not ok]
            if not missing:
                return masks
        masks[missing] = _random_blobs(len(missing), height, width, generator)
        return masks

    def _textures(self, images: torch.Tensor, selected: list[int], generator: torch.Generator) -> torch.Tensor:
        """One texture ``(3, H, W)`` per selected image, stacked to ``(N, 3, H, W)``."""
        _, _, height, width = images.shape
        if self.textures is not None:
            picks = torch.randint(len(self.textures), (len(selected),), generator=generator, device=generator.device)
            textures = torch.stack([self.textures.load(int(i), height, width) for i in picks.tolist()])
            textures = textures.to(device=images.device, dtype=images.dtype)
            return _scramble(textures, generator, zoom=False)
        batch_size = images.shape[0]
        # Another image of the batch, so the blended texture is not the object under its own mask.
        offsets = torch.randint(1, max(batch_size, 2), (len(selected),), generator=generator, device=generator.device)
        sources = [(i + int(o)) % batch_size for i, o in zip(selected, offsets.tolist(), strict=True)]
        return _scramble(images[sources], generator, zoom=True)


def _scramble(textures: torch.Tensor, generator: torch.Generator, zoom: bool) -> torch.Tensor:
    """Random zoomed crop (optional), quarter turn, flip and colour shift of ``(N, 3, H, W)`` textures in [0, 1].

    The zoom (a crop of 1/4 to 1/2 of each side, resized back) destroys the object's shape so that a
    training image can serve as a texture; the colour shift (channel permutation, per-channel gain and
    offset, occasional inversion) keeps the texture from matching the object's colours. All geometric
    changes are one affine resampling.
    """
    count = textures.shape[0]
    if count == 0:
        return textures
    device = generator.device
    u = torch.rand(count, 6, generator=generator, device=device)
    scale = 0.25 + 0.25 * u[:, :2] if zoom else torch.ones(count, 2, device=device)
    shift = (1 - scale) * (2 * u[:, 2:4] - 1)  # crop centre anywhere that keeps the crop inside
    quarter_turns = torch.floor(u[:, 4] * 4)
    theta = rotation_matrices(quarter_turns * 90.0).round()  # exact 0 / +-1 entries
    theta[:, :, :2] = theta[:, :, :2] * scale.unsqueeze(1)
    theta[:, 0, :2] = torch.where((u[:, 5:6] < 0.5), -theta[:, 0, :2], theta[:, 0, :2])
    theta[:, :, 2] = shift
    out = affine_resample(textures, theta, padding_mode="border")

    # Colour shift as one affine colour map per texture: y = M x + b with M a permutation matrix
    # times per-channel gains, negated (and b = 1 - b) for the inverted ones.
    permutations = torch.argsort(torch.rand(count, 3, generator=generator, device=device), dim=1)
    gains = 0.6 + 0.8 * torch.rand(count, 3, 1, generator=generator, device=device)
    offsets = 0.4 * (torch.rand(count, 3, 1, generator=generator, device=device) - 0.5)
    matrices = torch.eye(3, device=device)[permutations] * gains
    invert = (torch.rand(count, 1, 1, generator=generator, device=device) < 0.2).float()
    matrices = matrices * (1 - 2 * invert)
    offsets = offsets * (1 - 2 * invert) + invert
    flat = out.flatten(2)
    out = torch.baddbmm(offsets.to(flat), matrices.to(flat), flat).view_as(out)
    return out.clamp(0.0, 1.0)


def _random_blobs(count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Small random ellipses ``(count, 1, H, W)``: the fallback that guarantees a non-empty mask."""
    device = generator.device
    u = torch.rand(count, 4, generator=generator, device=device)
    ys = torch.arange(height, device=device, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, -1)
    radius_y = (height * (0.04 + 0.08 * u[:, 0])).clamp(min=1.0).view(-1, 1, 1)
    radius_x = (width * (0.04 + 0.08 * u[:, 1])).clamp(min=1.0).view(-1, 1, 1)
    centre_y = ((height - 1) * u[:, 2]).round().view(-1, 1, 1)
    centre_x = ((width - 1) * u[:, 3]).round().view(-1, 1, 1)
    inside = ((ys - centre_y) / radius_y) ** 2 + ((xs - centre_x) / radius_x) ** 2 <= 1.0
    return inside.unsqueeze(1).float()
