# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Category names from image paths: MVTec rule, root rule, stock anomalib batches."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from anomalib_promptmad.data.category import category_from_path


@pytest.mark.parametrize(
    ("path", "category"),
    [
        ("/data/MVTecAD/bottle/train/good/000.png", "bottle"),
        ("/data/MVTecAD/metal_nut/test/scratch/012.png", "metal_nut"),
        ("datasets/MVTecAD/pill/ground_truth/crack/000_mask.png", "pill"),
        (PurePosixPath("x/test/test/good/1.png"), "test"),  # a category may be named like a split
        (Path("relative/carpet/test/good/000.png"), "carpet"),
    ],
)
def test_mvtec_layout(path: str | PurePosixPath, category: str) -> None:
    """The category is the folder above train/test/ground_truth."""
    assert category_from_path(path) == category


@pytest.mark.parametrize(
    "path",
    ["/data/custom/screws/good/a.png", "000.png", "bottle/test/000.png", "/data/bottle/val/good/0.png"],
)
def test_not_mvtec_layout_raises(path: str) -> None:
    """Paths outside the MVTec layout raise a ValueError naming the path and the layout."""
    with pytest.raises(ValueError, match=r"MVTec layout.*\{train,test\}") as error:
        category_from_path(path)
    assert path in str(error.value)


def test_root_rule_any_layout(tmp_path: Path) -> None:
    """With a root, the category is the first folder below it, in any layout."""
    root = tmp_path / "custom"
    assert category_from_path(root / "screws" / "good" / "a.png", root=root) == "screws"
    assert category_from_path(str(root / "nuts" / "deep" / "er" / "b.png"), root=str(root)) == "nuts"


def test_root_rule_resolves_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative root still matches the absolute paths datasets produce."""
    (tmp_path / "data" / "gears" / "good").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    absolute = (tmp_path / "data" / "gears" / "good" / "a.png").resolve()
    assert category_from_path(absolute, root="data") == "gears"


@pytest.mark.parametrize("path", ["/elsewhere/screws/good/a.png", "/data/custom/a.png"])
def test_root_rule_outside_root_raises(path: str) -> None:
    """A path not inside a category folder of the root raises."""
    with pytest.raises(ValueError, match="not inside a category folder"):
        category_from_path(path, root="/data/custom")


def test_stock_anomalib_mvtec_batches(demo_root: Path) -> None:
    """Anomalib's own single-category MVTecAD batches carry paths the MVTec rule understands."""
    from anomalib.data import MVTecAD

    datamodule = MVTecAD(root=demo_root, category="fabric", num_workers=0, eval_batch_size=64)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    assert len(batch.image_path) == 7
    assert {category_from_path(path) for path in batch.image_path} == {"fabric"}
    assert {category_from_path(path, root=datamodule.root) for path in batch.image_path} == {"fabric"}
