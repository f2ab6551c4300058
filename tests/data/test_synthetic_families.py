# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Defect families, changed-pixel labels, foreground placement and the held-out validation families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_promptmad.data.synthetic import (
    FAMILY_NAMES,
    OBJECT_ONLY_FAMILIES,
    OPT_IN_FAMILIES,
    TRAINING_FAMILIES,
    VALIDATION_FAMILIES,
    AnomalySynthesizer,
    ColorJitterParams,
    category_foregrounds,
    color_shift,
    cutpaste_patch,
    cutpaste_scar,
    estimate_foreground,
    foreign_texture,
    misplaced_part,
    missing_part,
    scratches,
    spots,
)
from anomalib_promptmad.data.synthetic.synthesizer import FALLBACK_FAMILY

SIZE = 64


def _objects(count: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A textured, coloured disc (the object) on a plain light-grey background, and its mask."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.arange(SIZE).view(-1, 1).float()
    xs = torch.arange(SIZE).view(1, -1).float()
    disc = ((ys - 30) ** 2 + (xs - 34) ** 2) <= 16**2
    colour = torch.tensor([0.2, 0.35, 0.6]).view(1, 3, 1, 1)
    pattern = 0.15 * torch.rand(count, 3, SIZE, SIZE, generator=generator)
    images = torch.where(disc, (colour + pattern).clamp(0, 1), torch.full((count, 3, SIZE, SIZE), 0.8))
    return images, disc.expand(count, 1, SIZE, SIZE).clone()


def _assert_labels(images: torch.Tensor, out: torch.Tensor, masks: torch.Tensor, foreground: torch.Tensor) -> None:
    """Non-empty masks, exactly the visibly changed pixels, all on the foreground, nothing else touched."""
    assert (masks.flatten(1).sum(1) > 0).all(), "a mask is empty"
    labelled = masks.bool()
    change = (out - images).abs().amax(1, keepdim=True)
    assert (change[labelled] > 0.04).all(), "a labelled pixel did not visibly change"
    assert torch.equal(torch.where(labelled, 0, out), torch.where(labelled, 0, images)), "unlabelled pixel changed"
    assert (labelled <= foreground).all(), "an anomaly left the foreground"


# ------------------------------------------------------------------ changed-pixel labels and CutPaste


def test_a_paste_that_changes_no_pixel_yields_an_empty_mask() -> None:
    flat = torch.full((4, 3, SIZE, SIZE), 0.5)
    still = ColorJitterParams(0.0, 0.0, 0.0, 0.0)
    for paste in (cutpaste_patch, cutpaste_scar):
        out, masks = paste(flat, torch.Generator().manual_seed(0), jitter=still)
        assert torch.equal(out, flat)
        assert masks.sum() == 0


def test_background_pasted_on_background_is_not_labelled() -> None:
    """Only the pixels that really changed are labelled; the synthesizer still never returns an empty mask."""
    images, _ = _objects(16)
    out, masks = cutpaste_patch(images, torch.Generator().manual_seed(1), jitter=ColorJitterParams(0, 0, 0, 0))
    change = (out - images).abs().amax(1, keepdim=True)
    assert torch.equal(masks.bool(), change > 0.04)
    flat = torch.full((4, 3, SIZE, SIZE), 0.5)
    synthesizer = AnomalySynthesizer(families=["cutpaste_patch"], jitter=ColorJitterParams(0, 0, 0, 0))
    result = synthesizer.synthesize(flat, torch.Generator().manual_seed(0))
    assert (result.masks.flatten(1).sum(1) > 0).all()
    assert result.families == [FALLBACK_FAMILY] * 4  # the pastes changed nothing: the fallback blob
    assert ((result.images - flat).abs().amax(1, keepdim=True)[result.masks.bool()] > 0.04).all()


def test_cutpaste_jitter_defaults_to_onenip() -> None:
    jitter = ColorJitterParams()
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (0.4, 0.4, 0.4, 0.1)
    assert AnomalySynthesizer().jitter.brightness == 0.4


# ------------------------------------------------------------------ families


def _run(name: str, images: torch.Tensor, foreground: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    if name == "foreign_texture":
        donors = torch.rand(len(images), 3, SIZE, SIZE, generator=torch.Generator().manual_seed(99))
        return foreign_texture(images, generator, donors, foreground)
    family = {
        "spot": spots,
        "scratch": scratches,
        "color_shift": color_shift,
        "missing_part": missing_part,
        "misplaced_part": misplaced_part,
        "cutpaste_patch": cutpaste_patch,
        "cutpaste_scar": cutpaste_scar,
    }[name]
    return family(images, generator, foreground=foreground)


@pytest.mark.parametrize(
    "name",
    ["spot", "scratch", "color_shift", "missing_part", "misplaced_part", "foreign_texture", "cutpaste_patch",
     "cutpaste_scar"],
)
def test_each_family_labels_changed_pixels_on_the_foreground(name: str) -> None:
    images, foreground = _objects(8)
    non_empty = 0
    for seed in range(3):
        out, masks = _run(name, images, foreground, seed)
        assert out.shape == images.shape and masks.shape == (8, 1, SIZE, SIZE)
        assert out.min() >= 0 and out.max() <= 1
        non_empty += int((masks.flatten(1).sum(1) > 0).sum())
        if masks.sum():
            masked = masks.flatten(1).sum(1) > 0
            _assert_labels(images[masked], out[masked], masks[masked], foreground[masked])
    # each family visibly changes most of the images it is applied to (the synthesizer redraws the rest)
    assert non_empty >= 0.75 * 24, f"{name}: only {non_empty}/24 images changed"


def test_spots_and_scratches_are_small_and_thin() -> None:
    images, foreground = _objects(16)
    _, spot_masks = spots(images, torch.Generator().manual_seed(0), foreground)
    assert (spot_masks.flatten(1).mean(1) < 0.03).all()
    _, scratch_masks = scratches(images, torch.Generator().manual_seed(0), foreground)
    # thin: an eroded (3x3 min-pooled) scratch mask is nearly empty
    eroded = -torch.nn.functional.max_pool2d(-scratch_masks, 3, 1, 1)
    assert eroded.sum() < 0.35 * scratch_masks.sum()


def test_synthesizer_keeps_every_family_on_the_foreground() -> None:
    images, foreground = _objects(12)
    for families in (TRAINING_FAMILIES, VALIDATION_FAMILIES):
        synthesizer = AnomalySynthesizer(families=families)
        for seed in range(3):
            result = synthesizer.synthesize(images, torch.Generator().manual_seed(seed), foreground,
                                            categories=torch.arange(12) % 3)
            _assert_labels(images, result.images, result.masks, foreground)


def test_without_foreground_anomalies_go_anywhere_and_object_families_are_skipped() -> None:
    images, disc = _objects(32)
    synthesizer = AnomalySynthesizer(families={"missing_part": 1.0, "spot": 1.0})
    result = synthesizer.synthesize(images, torch.Generator().manual_seed(0))
    assert set(result.families) == {"spot"}  # no object, no missing part
    assert (result.masks.bool() & ~disc).any()  # spots also land off the disc
    whole = torch.ones_like(disc)  # an all-true foreground is a texture as well
    assert set(synthesizer.synthesize(images, torch.Generator().manual_seed(0), whole).families) == {"spot"}


def test_foreign_texture_takes_its_donor_from_another_category() -> None:
    red = torch.zeros(2, 3, SIZE, SIZE)
    red[:, 0] = 0.9
    blue = torch.zeros(2, 3, SIZE, SIZE)
    blue[:, 2] = 0.9
    images = torch.cat([red, blue])
    synthesizer = AnomalySynthesizer(families=["foreign_texture"], change_threshold=0.0)
    result = synthesizer.synthesize(images, torch.Generator().manual_seed(0), categories=torch.tensor([0, 0, 1, 1]))
    for index in range(4):
        inside = result.masks[index, 0].bool()
        own = images[index][:, inside].mean(1)
        made = result.images[index][:, inside].mean(1)
        # a red image got blue material and vice versa (opacity >= 0.7)
        assert (made - own).abs().max() > 0.5


def test_family_weights_and_errors() -> None:
    assert set(AnomalySynthesizer().families) == set(TRAINING_FAMILIES)
    only_cutpaste = AnomalySynthesizer(cutpaste_probability=1.0)
    assert set(only_cutpaste.families) == {"cutpaste_patch", "cutpaste_scar"}
    half = AnomalySynthesizer(cutpaste_probability=0.5).family_probabilities
    assert half["cutpaste_patch"] + half["cutpaste_scar"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown anomaly families"):
        AnomalySynthesizer(families=["rust"])
    with pytest.raises(ValueError, match="positive weight"):
        AnomalySynthesizer(families={"spot": 0.0})


# ------------------------------------------------------------------ held-out validation families


def test_default_training_and_validation_families_are_disjoint_and_cover_all() -> None:
    assert not set(TRAINING_FAMILIES) & set(VALIDATION_FAMILIES)
    assert set(TRAINING_FAMILIES) | set(VALIDATION_FAMILIES) | OPT_IN_FAMILIES == set(FAMILY_NAMES)
    assert not OPT_IN_FAMILIES & (set(TRAINING_FAMILIES) | set(VALIDATION_FAMILIES))
    assert set(VALIDATION_FAMILIES) - OBJECT_ONLY_FAMILIES, "textures need a validation family too"


def test_training_draws_never_produce_a_held_out_family() -> None:
    images, foreground = _objects(16)
    synthesizer = AnomalySynthesizer()
    drawn: set[str] = set()
    for seed in range(6):
        fg = foreground if seed % 2 else None
        drawn |= set(synthesizer.synthesize(images, torch.Generator().manual_seed(seed), fg).families)
    assert drawn - {FALLBACK_FAMILY} <= set(TRAINING_FAMILIES)
    assert not drawn & set(VALIDATION_FAMILIES)
    assert drawn & set(TRAINING_FAMILIES) == set(TRAINING_FAMILIES)  # and the training mix really is a mix


def _write_category(root: Path, category: str, colour: tuple[int, int, int], count: int = 6) -> None:
    folder = root / category / "train" / "good"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(len(category))
    ys, xs = np.mgrid[:SIZE, :SIZE]
    disc = (ys - 32) ** 2 + (xs - 32) ** 2 <= 18**2
    for index in range(count):
        image = np.full((SIZE, SIZE, 3), 220, dtype=np.uint8)
        image[disc] = (np.array(colour) + generator.integers(0, 30, (int(disc.sum()), 3))).clip(0, 255)
        Image.fromarray(image).save(folder / f"{index:03d}.png")


def test_validation_anomalies_come_only_from_held_out_families_on_the_foreground(tmp_path: Path) -> None:
    from anomalib.data.datasets.image.mvtecad import MVTecADDataset

    from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset

    _write_category(tmp_path, "disc", (40, 60, 150))
    _write_category(tmp_path, "coin", (150, 90, 30))
    source = MVTecADDataset(root=tmp_path, category="disc", split="train")
    source += MVTecADDataset(root=tmp_path, category="coin", split="train")
    dataset = SyntheticValidationDataset(source, seed=0)
    assert set(dataset.synthesizer.families) == set(VALIDATION_FAMILIES)
    assert set(dataset.foregrounds) == {"disc", "coin"}
    families = set()
    for index in range(len(dataset)):
        if dataset.samples.iloc[index].label_index != 1:
            continue
        result = dataset.anomaly(index)
        families.add(result.families[0])
        category = Path(dataset.samples.iloc[index].image_path).parts[-4]
        foreground = dataset.foregrounds[category]
        assert foreground is not None
        assert (result.masks[0, 0].bool() <= foreground).all()
        item = dataset[index]
        assert torch.equal(item.gt_mask.bool(), result.masks[0, 0].bool())
    assert families - {FALLBACK_FAMILY} <= set(VALIDATION_FAMILIES)
    assert len(families & set(VALIDATION_FAMILIES)) >= 2


def test_validation_families_are_assigned_in_equal_shares_and_synthesised_as_assigned(tmp_path: Path) -> None:
    from anomalib.data.datasets.image.mvtecad import MVTecADDataset

    from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset

    _write_category(tmp_path, "disc", (40, 60, 150), count=9)
    source = MVTecADDataset(root=tmp_path, category="disc", split="train")
    dataset = SyntheticValidationDataset(source, seed=0)
    anomalous = [i for i in range(len(dataset)) if dataset.samples.iloc[i].label_index == 1]
    assigned = [dataset.anomaly_family(dataset.samples.iloc[i].image_path) for i in anomalous]
    assert sorted(assigned) == sorted(list(VALIDATION_FAMILIES) * 3)  # 9 images, 3 families, 3 each
    made = [dataset.anomaly(i).families[0] for i in anomalous]
    assert all(got in {want, FALLBACK_FAMILY} for got, want in zip(made, assigned, strict=True))
    assert sum(got == want for got, want in zip(made, assigned, strict=True)) >= 7
    again = SyntheticValidationDataset(source, seed=0)
    assert [again.anomaly_family(dataset.samples.iloc[i].image_path) for i in anomalous] == assigned
    # without a foreground every category is a texture: parts cannot be misplaced
    textures = SyntheticValidationDataset(source, seed=0, foreground=False)
    names = {textures.anomaly_family(textures.samples.iloc[i].image_path) for i in anomalous}
    assert names == set(VALIDATION_FAMILIES) - OBJECT_ONLY_FAMILIES


def test_a_synthesizer_restricted_to_one_family_draws_only_it() -> None:
    images, disc = _objects(6)
    synthesizer = AnomalySynthesizer(families=VALIDATION_FAMILIES)
    result = synthesizer.drawing_only("color_shift").synthesize(images, torch.Generator().manual_seed(0), disc)
    assert set(result.families) <= {"color_shift", FALLBACK_FAMILY}
    assert synthesizer.families == list(VALIDATION_FAMILIES)  # the original is unchanged
    with pytest.raises(ValueError, match="does not draw 'spot'"):
        synthesizer.drawing_only("spot")


# ------------------------------------------------------------------ foreground estimate


def test_foreground_estimate_finds_the_object_and_refuses_textures() -> None:
    images, disc = _objects(12)
    estimate = estimate_foreground(images)
    assert estimate is not None
    truth = disc[0, 0]
    assert (estimate & truth).sum() >= 0.95 * truth.sum()  # covers the object
    assert (estimate & ~truth).sum() <= 0.25 * truth.sum()  # and little else
    noise = torch.rand(12, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    assert estimate_foreground(noise) is None
    smooth = torch.nn.functional.interpolate(
        torch.rand(12, 3, 8, 8, generator=torch.Generator().manual_seed(1)), size=SIZE, mode="bilinear"
    )
    assert estimate_foreground(smooth) is None


def test_category_foregrounds_reads_each_category(tmp_path: Path) -> None:
    _write_category(tmp_path, "disc", (40, 60, 150))
    paths = sorted(str(p) for p in tmp_path.rglob("*.png"))
    estimates = category_foregrounds(paths, lambda path: Path(path).parts[-4], size=32)
    assert set(estimates) == {"disc"}
    mask = estimates["disc"]
    assert mask is not None and mask.shape == (32, 32)
    assert mask[16, 16] and not mask[0, 0]


REAL = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (REAL / "mvtec_ad_256" / "pill").is_dir(), reason="shared real data not available")
def test_foreground_of_real_objects() -> None:
    paths = [*(REAL / "mvtec_ad_256" / "pill" / "train" / "good").glob("*.png")]
    paths += [*(REAL / "mvtec_ad_256" / "bottle" / "train" / "good").glob("*.png")]
    estimates = category_foregrounds(paths, lambda path: Path(path).parts[-4], images_per_category=8)
    for name, (low, high) in {"pill": (0.4, 0.7), "bottle": (0.6, 0.88)}.items():
        mask = estimates[name]
        assert mask is not None
        assert low <= float(mask.float().mean()) <= high
        assert mask[32, 32] and not mask[0, 0]


def test_synthesizer_pickles_for_data_loader_workers() -> None:
    """Validation sets (and their synthesizer) travel to worker processes by pickle."""
    import pickle

    images, foreground = _objects(6)
    synthesizer = AnomalySynthesizer(families=VALIDATION_FAMILIES)
    copy = pickle.loads(pickle.dumps(synthesizer))  # noqa: S301 - our own object
    first = synthesizer.synthesize(images, torch.Generator().manual_seed(0), foreground)
    second = copy.synthesize(images, torch.Generator().manual_seed(0), foreground)
    assert torch.equal(first.images, second.images) and first.families == second.families
