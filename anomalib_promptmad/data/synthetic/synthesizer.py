# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies: a mix of defect families, placed on the object, labelled where pixels changed.

For each image of a batch, :class:`AnomalySynthesizer` draws one defect family (see
:mod:`~anomalib_promptmad.data.synthetic.families`) with configurable probabilities: CutPaste "patch" or
"scar", DRAEM's Perlin-masked texture blending, small spots, scratches and cracks, colour shifts,
missing or misplaced parts, and textures from other categories. By default training draws four families
and validation (:class:`~anomalib_promptmad.data.synthetic.dataset.SyntheticValidationDataset`) three others,
so that validation measures generalisation to defect kinds never trained on; spots and scratches are
opt-in (see :mod:`~anomalib_promptmad.data.synthetic.families`).

Placement and labels:

* With a per-image ``foreground`` (estimated per category by
  :mod:`~anomalib_promptmad.data.synthetic.foreground`), every defect is centred on the object and only its
  part on the object is kept; images without one (textures) get defects anywhere, and never the
  object-only families.
* A pixel is labelled anomalous only where its colour visibly changed (``change_threshold``); every other
  pixel keeps its original value. An image whose defect changed nothing is redrawn (another family), and
  as a last resort it gets a small blob of shifted intensity, so every mask is non-empty.

Perlin textures come from a folder of images (e.g. the Describable Textures Dataset) when ``texture_dir``
is given, otherwise from the batch itself: another image (the same one when ``B == 1``), zoomed into a
random crop, flipped, rotated and colour-shifted so it no longer looks like the object. Training therefore
works offline with no extra data.

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

import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from anomalib_promptmad.data.synthetic.color_shift import color_shift
from anomalib_promptmad.data.synthetic.cutpaste import ColorJitterParams, cutpaste_patch, cutpaste_scar
from anomalib_promptmad.data.synthetic.families import OBJECT_ONLY_FAMILIES, resolve_family_weights
from anomalib_promptmad.data.synthetic.foreign import foreign_texture
from anomalib_promptmad.data.synthetic.geometry import affine_resample, rotation_matrices
from anomalib_promptmad.data.synthetic.parts import misplaced_part, missing_part
from anomalib_promptmad.data.synthetic.perlin import perlin_mask
from anomalib_promptmad.data.synthetic.placement import (
    DEFAULT_CHANGE_THRESHOLD,
    irregular_blobs,
    label_changes,
    sample_points,
)
from anomalib_promptmad.data.synthetic.scratches import scratches
from anomalib_promptmad.data.synthetic.spots import spots

__all__ = ["FALLBACK_FAMILY", "TEXTURE_EXTENSIONS", "AnomalySynthesizer", "SynthesisResult", "TextureFolder"]

# images a little outside [0, 1] (float rounding of a resize) are clamped, not refused
_RANGE_TOLERANCE = 1e-3

# Families called as f(images, generator, foreground, threshold=...) with nothing else.
_PLAIN_FAMILIES: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "spot": spots,
    "scratch": scratches,
    "missing_part": missing_part,
    "color_shift": color_shift,
    "misplaced_part": misplaced_part,
}

# Name reported for the last-resort blob of an image whose drawn defects all changed nothing.
FALLBACK_FAMILY = "fallback_blob"

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


@dataclass
class SynthesisResult:
    """What :meth:`AnomalySynthesizer.synthesize` made.

    Attributes:
        images: ``(B, 3, H, W)`` anomalous images in [0, 1].
        masks: ``(B, 1, H, W)`` float masks in {0, 1}, each non-empty.
        families: Per image, the family that made its defect (or :data:`FALLBACK_FAMILY`).
    """

    images: torch.Tensor
    masks: torch.Tensor
    families: list[str]


class AnomalySynthesizer:
    """Turn a batch of normal images into anomalous images with exact masks.

    Args:
        cutpaste_probability (float | None): If given, the share of CutPaste (patch and scar) among the
            draws; the other families share the rest (see
            :func:`~anomalib_promptmad.data.synthetic.families.resolve_family_weights`). ``None`` uses the
            ``families`` weights as they are. Defaults to ``None``.
        texture_dir (str | Path | None): Folder of texture images (searched recursively) for
            ``perlin_texture``. ``None`` derives textures from the batch itself. Defaults to ``None``.
        beta_range (tuple[float, float]): Range of the opacity ``beta`` of the original image inside the
            Perlin mask (0: texture only). Defaults to ``(0.0, 0.8)``.
        perlin_scale_exponents (tuple[int, int]): Inclusive range of ``k`` for ``2**k`` Perlin cells per
            axis. Defaults to ``(1, 5)``.
        perlin_threshold (float): Noise threshold of the Perlin mask. Defaults to ``0.5``.
        perlin_attempts (int): Draws of a Perlin mask before falling back to a blob. Defaults to ``4``.
        jitter (ColorJitterParams | None): CutPaste colour jitter. Defaults to OneNIP's (0.4, 0.4, 0.4, 0.1).
        families (Mapping[str, float] | Sequence[str] | None): Relative draw weights by family name (or names
            with equal weights). Defaults to ``None``:
            :data:`~anomalib_promptmad.data.synthetic.families.TRAINING_FAMILIES`.
        change_threshold (float): Per-pixel colour change a pixel needs to be labelled anomalous.
            Defaults to ``0.04`` (10/255).
        attempts (int): Family draws per image before the fallback blob. Defaults to ``3``.

    Raises:
        ValueError: If a probability, range or family name is invalid.
        FileNotFoundError: If ``texture_dir`` is given but holds no image.
    """

    def __init__(
        self,
        cutpaste_probability: float | None = None,
        texture_dir: str | Path | None = None,
        beta_range: tuple[float, float] = (0.0, 0.8),
        perlin_scale_exponents: tuple[int, int] = (1, 5),
        perlin_threshold: float = 0.5,
        perlin_attempts: int = 4,
        jitter: ColorJitterParams | None = None,
        families: Mapping[str, float] | Sequence[str] | None = None,
        change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
        attempts: int = 3,
    ) -> None:
        if not 0.0 <= beta_range[0] <= beta_range[1] <= 1.0:
            msg = f"beta_range must satisfy 0 <= low <= high <= 1, got {beta_range}"
            raise ValueError(msg)
        if perlin_attempts < 1 or attempts < 1:
            msg = f"perlin_attempts and attempts must be >= 1, got {perlin_attempts} and {attempts}"
            raise ValueError(msg)
        if not 0.0 <= change_threshold < 1.0:
            msg = f"change_threshold must be in [0, 1), got {change_threshold}"
            raise ValueError(msg)
        self.family_probabilities = resolve_family_weights(families, cutpaste_probability)
        self.textures = TextureFolder(texture_dir) if texture_dir is not None else None
        self.beta_range = beta_range
        self.perlin_scale_exponents = perlin_scale_exponents
        self.perlin_threshold = perlin_threshold
        self.perlin_attempts = perlin_attempts
        self.jitter = jitter or ColorJitterParams()
        self.change_threshold = change_threshold
        self.attempts = attempts

    @property
    def families(self) -> list[str]:
        """Names of the families this synthesizer draws."""
        return list(self.family_probabilities)

    def drawing_only(self, family: str) -> AnomalySynthesizer:
        """A copy with the same settings that draws only ``family`` (redraws and the fallback as usual).

        Raises:
            ValueError: If this synthesizer does not draw ``family``.
        """
        if family not in self.family_probabilities:
            msg = f"this synthesizer does not draw {family!r}; it draws {self.families}"
            raise ValueError(msg)
        restricted = copy.copy(self)
        restricted.family_probabilities = {family: 1.0}
        return restricted

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        foreground: torch.Tensor | None = None,
        categories: torch.Tensor | None = None,
        donors: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthesise one anomaly per image (see :meth:`synthesize`); returns ``(images, masks)``."""
        result = self.synthesize(images, generator, foreground, categories, donors)
        return result.images, result.masks

    def synthesize(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        foreground: torch.Tensor | None = None,
        categories: torch.Tensor | None = None,
        donors: torch.Tensor | None = None,
    ) -> SynthesisResult:
        """Synthesise one anomaly per image.

        Args:
            images (torch.Tensor): Normal images of shape ``(B, 3, H, W)`` with values in [0, 1].
            generator (torch.Generator): Source of all randomness (any device); same state, same output.
            foreground (torch.Tensor | None): ``(B, 1, H, W)`` bool object masks; ``None`` (or an all-true
                or empty mask) means the whole image (a texture).
            categories (torch.Tensor | None): ``(B,)`` category indices; ``foreign_texture`` takes its donor
                from another category of the batch.
            donors (torch.Tensor | None): ``(B, 3, H, W)`` donor images for ``foreign_texture`` (e.g. of other
                categories, where the batch has none); they take precedence over ``categories``.

        Returns:
            SynthesisResult: Anomalous images ``(B, 3, H, W)`` in [0, 1], float masks ``(B, 1, H, W)`` in
            {0, 1} with at least one anomalous pixel each (all visibly changed, all on the foreground), and
            the family of each. Pixels where the mask is 0 equal the input.

        Raises:
            ValueError: If ``images`` is not ``(B, 3, H, W)`` in [0, 1] or ``foreground`` does not match it.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            msg = f"images must have shape (B, 3, H, W), got {tuple(images.shape)}"
            raise ValueError(msg)
        if images.numel() and (images.min() < -_RANGE_TOLERANCE or images.max() > 1 + _RANGE_TOLERANCE):
            msg = "images must be in [0, 1] (un-normalised); apply the synthesizer before mean/std normalisation"
            raise ValueError(msg)
        # a resize rounds pure white to 1.0000001: that is [0, 1], not a normalised image
        images = images.clamp(0, 1)
        batch_size, _, height, width = images.shape
        if foreground is not None:
            if foreground.shape != (batch_size, 1, height, width):
                msg = f"foreground must have shape {(batch_size, 1, height, width)}, got {tuple(foreground.shape)}"
                raise ValueError(msg)
            foreground = foreground.to(device=images.device, dtype=torch.bool)
            coverage = foreground.flatten(1).float().mean(1)
            # an empty or full foreground says "no object here": whole-image placement
            foreground = torch.where(((coverage == 0) | (coverage == 1)).view(-1, 1, 1, 1), True, foreground)
            is_object = (coverage > 0) & (coverage < 1)
        else:
            is_object = torch.zeros(batch_size, dtype=torch.bool, device=images.device)
        context = _Context(images, foreground, categories, donors)

        out = images.clone()
        masks = torch.zeros(batch_size, 1, height, width, dtype=images.dtype, device=images.device)
        families = [FALLBACK_FAMILY] * batch_size
        pending = list(range(batch_size))
        names = list(self.family_probabilities)
        weights = torch.tensor([self.family_probabilities[name] for name in names])
        object_only = torch.tensor([name in OBJECT_ONLY_FAMILIES for name in names])
        for _ in range(self.attempts):
            if not pending:
                break
            table = weights.expand(len(pending), -1).clone()
            table[~is_object[pending].cpu().unsqueeze(1) & object_only.unsqueeze(0)] = 0
            draws = torch.rand(len(pending), generator=generator, device=generator.device).cpu()
            drawable = table.sum(1) > 0
            cumulative = table.cumsum(1) / table.sum(1, keepdim=True).clamp(min=1e-12)
            choice = torch.searchsorted(cumulative, draws.unsqueeze(1)).squeeze(1).clamp(max=len(names) - 1)
            for position, name in enumerate(names):
                selected = [i for i, c, ok in zip(pending, choice.tolist(), drawable.tolist(), strict=True)
                            if ok and c == position]
                if not selected:
                    continue
                made, made_masks = self._run_family(name, context, selected, generator)
                for row, index in enumerate(selected):
                    if bool(made_masks[row].any()):
                        out[index], masks[index], families[index] = made[row], made_masks[row], name
            pending = [index for index in pending if not bool(masks[index].any())]
        if pending:
            out[pending], masks[pending] = self._fallback(context, pending, generator)
        return SynthesisResult(out, masks, families)

    # ------------------------------------------------------------------ families
    def _run_family(
        self,
        name: str,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Family ``name`` on the images ``selected``: ``(N, 3, H, W)`` images and ``(N, 1, H, W)`` masks.

        Dispatch by name, not through stored bound methods or closures: the synthesizer is pickled into
        data-loader workers and checkpoints.
        """
        if name in _PLAIN_FAMILIES:
            return _PLAIN_FAMILIES[name](
                context.images[selected],
                generator,
                context.foreground_of(selected),
                threshold=self.change_threshold,
            )
        method = {
            "cutpaste_patch": self._cutpaste_patch,
            "cutpaste_scar": self._cutpaste_scar,
            "perlin_texture": self._perlin_blend,
            "foreign_texture": self._foreign_texture,
        }[name]
        return method(context, selected, generator)

    def _cutpaste_patch(
        self,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return cutpaste_patch(
            context.images[selected],
            generator,
            jitter=self.jitter,
            foreground=context.foreground_of(selected),
            threshold=self.change_threshold,
        )

    def _cutpaste_scar(
        self,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return cutpaste_scar(
            context.images[selected],
            generator,
            jitter=self.jitter,
            foreground=context.foreground_of(selected),
            threshold=self.change_threshold,
        )

    def _foreign_texture(
        self,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A blob of another category's image; a scrambled batch image where no other category is at hand."""
        images = context.images
        if context.donors is not None:
            donors = context.donors[selected].to(images)
        else:
            picks = torch.rand(len(selected), generator=generator, device=generator.device).tolist()
            labels = context.categories.tolist() if context.categories is not None else None
            donors_list = []
            for index, u in zip(selected, picks, strict=True):
                others = [j for j in range(len(images)) if labels is not None and labels[j] != labels[index]]
                if others:
                    donors_list.append(images[others[min(int(u * len(others)), len(others) - 1)]])
                else:
                    donors_list.append(self._textures(images, [index], generator)[0])
            donors = torch.stack(donors_list)
        return foreign_texture(
            images[selected],
            generator,
            donors,
            context.foreground_of(selected),
            threshold=self.change_threshold,
        )

    def _perlin_blend(
        self,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DRAEM blending of a texture into the images ``selected`` through non-empty Perlin masks."""
        images = context.images
        _, _, height, width = images.shape
        masks = self._non_empty_perlin_masks(len(selected), height, width, generator).to(images.device)
        textures = self._textures(images, selected, generator)
        low, high = self.beta_range
        beta = (low + (high - low) * torch.rand(len(selected), generator=generator, device=generator.device)).to(
            images.device,
        )
        beta = beta.view(-1, 1, 1, 1).to(images.dtype)
        x = images[selected]
        # With a binary mask, x * (1 - m) + (1 - beta) * t * m + beta * x * m is exactly this selection.
        blended = torch.where(masks.bool(), torch.lerp(textures, x, beta).clamp(0.0, 1.0), x)
        return label_changes(x, blended, masks, context.foreground_of(selected), self.change_threshold)

    def _fallback(
        self,
        context: _Context,
        selected: list[int],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A small blob on the foreground whose intensity moves by 0.3: always a visible, non-empty change."""
        x = context.images[selected]
        _, _, height, width = x.shape
        foreground = context.foreground_of(selected)
        centres = sample_points(len(selected), height, width, generator, foreground)
        region = irregular_blobs(centres, height, width, generator, (0.03, 0.08), roughness=0.0).to(x.device)
        shifted = torch.where(x < 0.5, x + 0.3, x - 0.3)
        threshold = min(self.change_threshold, 0.29)
        return label_changes(x, torch.where(region, shifted, x), region, foreground, threshold)

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


@dataclass
class _Context:
    """The batch a synthesizer call works on."""

    images: torch.Tensor
    foreground: torch.Tensor | None
    categories: torch.Tensor | None
    donors: torch.Tensor | None

    def foreground_of(self, selected: list[int]) -> torch.Tensor | None:
        return self.foreground[selected] if self.foreground is not None else None


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
