# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies: Perlin masks, CutPaste, the synthesizer and the synthetic validation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_promptmad.data.synthetic import (
    AnomalySynthesizer,
    cutpaste_patch,
    cutpaste_scar,
    perlin_mask,
    perlin_noise,
)


def _images(batch_size: int = 8, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Structured test images (smooth gradients plus noise) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = (ramp.view(1, 1, -1, 1) * 0.5 + ramp.view(1, 1, 1, -1) * 0.3).expand(batch_size, 3, size, size)
    return (base + 0.2 * torch.rand(batch_size, 3, size, size, generator=generator)).clamp(0, 1)


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool: pixels where any channel differs."""
    return (before != after).any(dim=1, keepdim=True)


# ---------------------------------------------------------------------------------------------- Perlin


def test_perlin_noise_shape_range_and_determinism() -> None:
    """Noise has the requested shape, bounded values, and depends on the seed only."""
    noise = perlin_noise(4, 50, 70, torch.Generator().manual_seed(1))
    assert noise.shape == (4, 50, 70)
    assert noise.abs().max() < 1.0
    assert noise.std() > 0.05
    assert torch.equal(noise, perlin_noise(4, 50, 70, torch.Generator().manual_seed(1)))
    assert not torch.equal(noise, perlin_noise(4, 50, 70, torch.Generator().manual_seed(2)))


def test_perlin_scale_controls_smoothness() -> None:
    """2**1 lattice cells give much smoother noise than 2**5 (neighbouring pixels differ less)."""
    coarse = perlin_noise(4, 64, 64, torch.Generator().manual_seed(0), scale_exponents=(1, 1), rotate=False)
    fine = perlin_noise(4, 64, 64, torch.Generator().manual_seed(0), scale_exponents=(5, 5), rotate=False)
    roughness = lambda n: (n[:, 1:] - n[:, :-1]).abs().mean()  # noqa: E731
    assert roughness(fine) > 4 * roughness(coarse)


def test_perlin_mask_is_binary() -> None:
    """Masks are float 0/1 and cover part of the image."""
    masks = perlin_mask(16, 64, 64, torch.Generator().manual_seed(0))
    assert masks.shape == (16, 1, 64, 64)
    assert masks.dtype == torch.float32
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert 0 < masks.mean() < 0.5


def test_perlin_rejects_bad_scales() -> None:
    """An inverted scale range is rejected."""
    with pytest.raises(ValueError, match="scale_exponents"):
        perlin_noise(1, 8, 8, torch.Generator(), scale_exponents=(3, 1))


# ---------------------------------------------------------------------------------------------- CutPaste


def test_cutpaste_patch_area_aspect_and_exact_mask() -> None:
    """Patches cover 2-15 % of the image with aspect 0.3-3.3; only masked pixels change."""
    images = _images(16, 128)
    out, masks = cutpaste_patch(images, torch.Generator().manual_seed(0), threshold=0.0)  # the whole pasted region
    assert out.shape == images.shape and masks.shape == (16, 1, 128, 128)
    assert torch.equal(out * (1 - masks), images * (1 - masks)), "pixels outside the mask changed"
    for mask in masks[:, 0]:
        area = mask.mean().item()
        assert 0.018 <= area <= 0.155
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        height, width = len(rows), len(cols)
        assert height * width == mask.sum()  # an axis-aligned rectangle
        assert 0.25 <= height / width <= 3.6
    assert _changed(images, out).float().mean() > 0.01  # the jittered patch differs from what it covers


def test_cutpaste_scar_size_rotation_and_exact_mask() -> None:
    """Scars are thin, mostly rotated rectangles; only masked pixels change."""
    images = _images(16, 256)
    out, masks = cutpaste_scar(images, torch.Generator().manual_seed(0), threshold=0.0)
    assert torch.equal(out * (1 - masks), images * (1 - masks))
    areas = masks.flatten(1).sum(1)
    assert (areas >= 2 * 10 * 0.7).all() and (areas <= 16 * 25 * 1.3).all()
    rectangles = 0
    for mask in masks[:, 0].bool():
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        rectangles += int(len(rows) * len(cols) == mask.sum())
    assert rectangles < 16, "scars are never rotated"


def test_cutpaste_scales_with_image_size() -> None:
    """Scar sizes scale with the image side and never vanish."""
    _, small = cutpaste_scar(_images(16, 64), torch.Generator().manual_seed(0), threshold=0.0)
    _, large = cutpaste_scar(_images(16, 256), torch.Generator().manual_seed(0), threshold=0.0)
    assert large.sum() > 8 * small.sum()
    assert (small.flatten(1).sum(1) > 0).all()


# ---------------------------------------------------------------------------------------------- synthesizer


@pytest.mark.parametrize("cutpaste_probability", [0.0, 0.5, 1.0])
def test_synthesizer_contract(cutpaste_probability: float) -> None:
    """Shapes, ranges, non-empty binary masks, untouched pixels outside the mask."""
    images = _images(8, 64)
    synthesizer = AnomalySynthesizer(cutpaste_probability=cutpaste_probability)
    for seed in range(4):
        out, masks = synthesizer(images, torch.Generator().manual_seed(seed))
        assert out.shape == images.shape and out.dtype == images.dtype
        assert masks.shape == (8, 1, 64, 64) and masks.dtype == images.dtype
        assert out.min() >= 0 and out.max() <= 1
        assert set(masks.unique().tolist()) <= {0.0, 1.0}
        assert (masks.flatten(1).amax(1) == 1).all(), "a mask is empty"
        assert torch.equal(torch.where(masks.bool(), 0, out), torch.where(masks.bool(), 0, images))
        assert _changed(images, out).sum() > 0.5 * masks.sum()


def test_synthesizer_determinism_and_no_global_rng() -> None:
    """Output depends on the generator only, not on global random state."""
    images = _images(8, 64)
    synthesizer = AnomalySynthesizer()
    torch.manual_seed(1)
    first = synthesizer(images, torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    np.random.seed(2)
    second = AnomalySynthesizer()(images, torch.Generator().manual_seed(7))
    other = synthesizer(images, torch.Generator().manual_seed(8))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[1], other[1])
    assert not torch.equal(first[0], other[0])


def test_synthesizer_uses_both_methods() -> None:
    """With CutPaste at 50 % (and threshold 0), both rectangles and irregular Perlin masks appear."""
    synthesizer = AnomalySynthesizer(cutpaste_probability=0.5, families=["cutpaste_patch", "perlin_texture"],
                                     change_threshold=0.0)
    _, masks = synthesizer(_images(64, 32), torch.Generator().manual_seed(0))
    rectangles = 0
    for mask in masks[:, 0].bool():
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        rectangles += int(len(rows) * len(cols) == mask.sum())
    assert 10 <= rectangles <= 54


def test_empty_perlin_masks_fall_back_to_a_blob() -> None:
    """When Perlin masks stay empty, a small blob is used."""
    synthesizer = AnomalySynthesizer(families=["perlin_texture"], perlin_threshold=5.0, perlin_attempts=2)
    _, masks = synthesizer(_images(4, 64), torch.Generator().manual_seed(0))
    areas = masks.flatten(1).sum(1)
    assert (areas > 0).all() and (areas < 0.1 * 64 * 64).all()


def test_single_image_batch_uses_its_own_texture() -> None:
    """A batch of one image still gets a texture (from itself)."""
    images = _images(1, 64)
    out, masks = AnomalySynthesizer(families=["perlin_texture"])(images, torch.Generator().manual_seed(0))
    assert masks.sum() > 0 and _changed(images, out).sum() > 0


def _write_texture(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (90, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_texture_dir_versus_self_texture(tmp_path: Path) -> None:
    """Textures from a folder (searched recursively) replace the batch-derived ones."""
    _write_texture(tmp_path / "dtd" / "banded" / "a.jpg", (200, 40, 40))
    _write_texture(tmp_path / "dtd" / "dotted" / "deeper" / "b.PNG", (200, 40, 40))
    (tmp_path / "dtd" / "notes.txt").write_text("not an image")
    images = _images(8, 64)
    kwargs = {"families": ["perlin_texture"], "beta_range": (0.0, 0.0), "change_threshold": 0.0}
    from_folder = AnomalySynthesizer(texture_dir=tmp_path / "dtd", **kwargs)
    assert len(from_folder.textures) == 2
    out_folder, masks = from_folder(images, torch.Generator().manual_seed(0))
    out_self, masks_self = AnomalySynthesizer(**kwargs)(images, torch.Generator().manual_seed(0))
    assert torch.equal(masks, masks_self)  # the same masks, different textures
    for index in range(8):
        inside = masks[index, 0].bool()
        # A uniform texture stays uniform through flips, turns and the colour shift (beta 0: texture only).
        assert out_folder[index][:, inside].std(dim=1).max() < 1e-5
        assert out_self[index][:, inside].std(dim=1).max() > 1e-3


@pytest.mark.parametrize("make", ["missing", "empty", "no_images"])
def test_texture_dir_errors(tmp_path: Path, make: str) -> None:
    """A missing, empty or image-less texture folder raises, naming the folder."""
    folder = tmp_path / "textures"
    if make != "missing":
        folder.mkdir()
    if make == "no_images":
        (folder / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="texture_dir") as error:
        AnomalySynthesizer(texture_dir=folder)
    assert str(folder) in str(error.value)


def test_synthesizer_rejects_bad_input() -> None:
    """Normalised images, wrong shapes and bad probabilities are rejected."""
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AnomalySynthesizer()(torch.full((2, 3, 16, 16), 2.0), torch.Generator())
    with pytest.raises(ValueError, match="shape"):
        AnomalySynthesizer()(torch.rand(3, 16, 16), torch.Generator())
    with pytest.raises(ValueError, match="cutpaste_probability"):
        AnomalySynthesizer(cutpaste_probability=1.5)


def test_synthesizer_accepts_the_rounding_of_a_resize() -> None:
    """A downscaled image of pure white holds 1.0000001: clamped to [0, 1], not refused."""
    white = torch.nn.functional.interpolate(torch.ones(2, 3, 40, 40), size=(16, 16), mode="bilinear", antialias=True)
    images = (white + 1e-7).clamp_min(0)
    anomalous, masks = AnomalySynthesizer()(images, torch.Generator().manual_seed(0))
    assert anomalous.min() >= 0 and anomalous.max() <= 1
    assert masks.shape == (2, 1, 16, 16)


# ---------------------------------------------------------------------------------------------- dataset


def test_synthetic_anomaly_dataset(demo_root: Path) -> None:
    """Each normal appears twice; anomalies are seeded, masks exact, other pixels untouched."""
    from anomalib.data.datasets.image.mvtecad import MVTecADDataset
    from anomalib.data.utils import read_image

    from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset

    source = MVTecADDataset(root=demo_root, category="disc", split="train")
    dataset = SyntheticValidationDataset(source, seed=3)
    assert len(dataset) == 2 * len(source)
    assert dataset.samples.label_index.tolist().count(1) == len(source)
    again = SyntheticValidationDataset(source, seed=3)
    other_seed = SyntheticValidationDataset(source, seed=4)
    n_anomalous = 0
    for index in range(len(dataset)):
        item = dataset[index]
        original = read_image(item.image_path, as_tensor=True)
        outside = ~item.gt_mask.bool()
        assert torch.equal(item.image[:, outside], original[:, outside])
        if item.gt_label == 1:
            n_anomalous += 1
            assert item.gt_mask.sum() > 0
            assert torch.equal(item.image, again[index].image)
            assert not torch.equal(item.image, other_seed[index].image)
        else:
            assert item.gt_mask.sum() == 0
    assert n_anomalous == len(source)
