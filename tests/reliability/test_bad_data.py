# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Bad data: each case trains correctly or fails at once with one error naming the file and the fix.

Failures happen in the datamodule's or model's ``__init__``, before an ``Engine`` exists, so nothing is
written (the Engine creates its results folder before the datamodule's ``setup`` runs).
"""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from anomalib_promptmad import MultiClassMVTecAD, PromptMAD
from anomalib_promptmad.data.validation import DataValidationError
from anomalib_promptmad.prompts import PromptCatalogError


def _copy(demo_root: Path, tmp_path: Path, category: str = "disc") -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo_root / category, root / category)
    return root


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _convert(folder: Path, convert: Any) -> None:  # noqa: ANN401
    for path in sorted(folder.rglob("*.png")):
        if "ground_truth" not in path.parts:
            convert(Image.open(path)).save(path)


def test_grayscale_rgba_non_square_and_tiny_images_train_and_test(
    demo_root: Path, tmp_path: Path, model_settings: dict[str, Any]
) -> None:
    """Grayscale, RGBA + non-square, and 12 px images of categories without prompt entries: fit and test work."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    root = tmp_path / "data"
    for source, target in (("disc", "gray_widget"), ("fabric", "rgba_panel")):
        shutil.copytree(demo_root / source, root / target)
    _convert(root / "gray_widget", lambda image: image.convert("L"))
    # non-square RGBA: images and their masks get the same new size
    for path in sorted((root / "rgba_panel").rglob("*.png")):
        image = Image.open(path).resize((48, 24), Image.Resampling.NEAREST)
        (image if "ground_truth" in path.parts else image.convert("RGBA")).save(path)
    for path in sorted((root / "gray_widget").rglob("*.png")):  # very small: 12 x 12 (model input: 32)
        Image.open(path).resize((12, 12), Image.Resampling.NEAREST).save(path)
    assert Image.open(next((root / "gray_widget" / "train" / "good").iterdir())).mode == "L"

    seed_everything(0)
    datamodule = MultiClassMVTecAD(root=root, train_batch_size=4, eval_batch_size=8, num_workers=0)
    settings = {key: value for key, value in model_settings.items() if key != "prompt_library"}
    model = PromptMAD(**{**settings, "max_epochs": 1})
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine.fit(model=model, datamodule=datamodule)
        (metrics,) = engine.test(model=model, datamodule=datamodule)
    # categories without a prompt entry fall back to generic prompts, with a warning that shows the YAML to add
    fallback = [str(w.message) for w in caught if "No prompts for category" in str(w.message)]
    assert any("gray_widget" in message for message in fallback) or "gray_widget" in str(fallback)
    assert model.model.text_tokens.is_set
    for name in ("image_AUROC", "pixel_AUROC", "gray_widget/pixel_AUROC", "rgba_panel/pixel_AUROC"):
        assert math.isfinite(metrics[name]), name
    assert metrics["test_category_accuracy"] == 1.0


@pytest.mark.parametrize("case", ["corrupt", "truncated", "16-bit", "mask size"])
def test_unusable_file_fails_at_once_naming_file_and_fix(demo_root: Path, tmp_path: Path, case: str) -> None:
    """One error at datamodule construction, naming the file and the fix; nothing is written anywhere."""
    root = _copy(demo_root, tmp_path)
    image = root / "disc" / "train" / "good" / "003.png"
    if case == "corrupt":
        image.write_bytes(b"this is not an image" * 10)
        bad, fix = image, "re-export or replace the file"
    elif case == "truncated":
        image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
        bad, fix = image, "truncated PNG file"
    elif case == "16-bit":
        pixels = (np.asarray(Image.open(image).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        Image.fromarray(pixels).save(image)
        assert Image.open(image).mode.startswith("I")
        bad, fix = image, "Convert the file to 8-bit"
    else:
        (mask,) = sorted((root / "disc" / "ground_truth").rglob("*.png"))[:1]
        Image.open(mask).resize((20, 20)).save(mask)
        bad, fix = mask, "resize the mask to the image's size"
    before = _listing(tmp_path)
    with pytest.raises(DataValidationError) as error:
        MultiClassMVTecAD(root=root, num_workers=0)
    message = str(error.value)
    assert str(bad) in message
    assert fix in message
    assert message.count("\n  ") == 1  # exactly the one bad file is listed
    assert _listing(tmp_path) == before


def test_damaged_pixel_data_names_the_file_when_loaded(demo_root: Path, tmp_path: Path) -> None:
    """Damage inside an intact PNG passes the cheap check; loading it names the file instead of a bare zlib error."""
    root = _copy(demo_root, tmp_path)
    image = root / "disc" / "train" / "good" / "003.png"
    data = bytearray(image.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = bytes(40)
    image.write_bytes(bytes(data))
    datamodule = MultiClassMVTecAD(root=root, num_workers=0)
    datamodule.setup("fit")
    dataset = datamodule.train_data
    position = [str(path) for path in dataset.samples.image_path].index(str(image))
    with pytest.raises(OSError, match=r"003\.png.*Replace or remove the file"):
        dataset[position]


def test_defect_image_without_mask_is_named(demo_root: Path, tmp_path: Path) -> None:
    """A defect image whose mask is missing: the error names the image and the mask to add."""
    root = _copy(demo_root, tmp_path)
    (mask,) = sorted((root / "disc" / "ground_truth").rglob("*.png"))[:1]
    mask.unlink()
    image_name = mask.name.replace("_mask", "")
    # the only category is unusable: "no usable category" (FileNotFoundError), else "unusable category" (ValueError)
    with pytest.raises((ValueError, FileNotFoundError), match=rf"without a mask: test/{mask.parent.name}/{image_name}.*_mask\.png"):
        MultiClassMVTecAD(root=root, categories=["disc"], num_workers=0)


def test_category_without_training_images(demo_root: Path, tmp_path: Path) -> None:
    """A category whose train/good is empty is named with what it lacks, and the usable categories listed."""
    root = _copy(demo_root, tmp_path)
    shutil.copytree(demo_root / "fabric", root / "fabric")
    for path in (root / "fabric" / "train" / "good").iterdir():
        path.unlink()
    with pytest.raises(ValueError, match=r"'fabric' \(no images in train/good\).*Available categories: \['disc'\]"):
        MultiClassMVTecAD(root=root, categories=["disc", "fabric"], num_workers=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty"),
        ("categories: [bottle, pill]\n", "categories: Expected a <class 'dict'>. Got value: ['bottle', 'pill']"),
        ("categories:\n  gear:\n    object: 3\n", "categories.gear.object: Not of type NotEmptyStr: expected string"),
    ],
)
def test_bad_prompt_yaml_fails_when_the_model_is_built(tmp_path: Path, text: str, expected: str) -> None:
    """An empty prompt file or one with wrong types fails in PromptMAD(...), before data or training, naming the file."""
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    with pytest.raises(PromptCatalogError) as error:
        PromptMAD(image_size=32, backbone_weights="none", text_encoder="minilm", prompt_library=str(path))
    assert str(path) in str(error.value)
    assert expected in str(error.value)
