# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Demo dataset: layout, masks, variation, prompts, atomic writes, overwrite refusal, CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from anomalib_promptmad.data import demo
from anomalib_promptmad.data.demo import DEMO_CATEGORIES, generate_demo_dataset, main


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def default_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset with default arguments (its generation time: scripts/data_speed.py)."""
    return generate_demo_dataset(tmp_path_factory.mktemp("default") / "demo")


def test_default_layout(default_root: Path) -> None:
    """Defaults: three categories in the MVTec layout, at least two defect types."""
    root = default_root
    assert sorted(p.name for p in root.iterdir()) == ["circuit", "disc", "fabric", "prompts.yaml"]
    for name, spec in DEMO_CATEGORIES.items():
        assert len(spec.defects) >= 2
        assert len(list((root / name / "train" / "good").glob("*.png"))) == 24
        assert len(list((root / name / "test" / "good").glob("*.png"))) == 6
        assert sorted(p.name for p in (root / name / "test").iterdir()) == sorted(["good", *spec.defects])
        for defect in spec.defects:
            images = sorted((root / name / "test" / defect).glob("*.png"))
            masks = sorted((root / name / "ground_truth" / defect).glob("*.png"))
            assert len(images) == len(masks) == 6
            assert [f"{p.stem}_mask.png" for p in images] == [p.name for p in masks]
        image = Image.open(root / name / "train" / "good" / "000.png")
        assert image.size == (128, 128) and image.mode == "RGB"


def test_mask_files_are_binary_and_non_empty(default_root: Path) -> None:
    """Mask files hold only 0 and 255 and mark at least one pixel."""
    root = default_root
    for name, spec in DEMO_CATEGORIES.items():
        for defect in spec.defects:
            for mask_path in sorted((root / name / "ground_truth" / defect).glob("*.png")):
                mask = np.asarray(Image.open(mask_path))
                assert mask.shape == (128, 128)
                assert set(np.unique(mask)) == {0, 255}, f"{mask_path} is empty or not binary"


@pytest.mark.parametrize("name", sorted(DEMO_CATEGORIES))
@pytest.mark.parametrize("size", [32, 128])
def test_defects_change_exactly_the_mask(name: str, size: int) -> None:
    """Before sensor noise, a defect changes every masked pixel visibly and nothing else."""
    spec = DEMO_CATEGORIES[name]
    rng = np.random.default_rng(0)
    for defect, make in spec.defects.items():
        for _ in range(10):
            scene = spec.render(rng, size)
            image, mask = make(scene, rng)
            changed = np.abs(image - scene.image).max(axis=2) > 0
            assert mask.any(), f"{name}/{defect}: empty mask"
            assert np.array_equal(changed, mask), f"{name}/{defect}: mask differs from the changed pixels"
            assert np.abs(image - scene.image)[mask].mean() > 0.1, f"{name}/{defect}: defect barely visible"


def test_categories_look_different_and_vary(default_root: Path) -> None:
    """Categories differ in colour; two normal images of a category differ a little."""
    root = default_root
    means = {name: _read(root / name / "train" / "good" / "000.png").mean(axis=(0, 1)) for name in DEMO_CATEGORIES}
    names = list(means)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert np.abs(means[first] - means[second]).max() > 0.05
    for name in names:
        a, b = (_read(root / name / "train" / "good" / f"00{i}.png") for i in (0, 1))
        assert 0.005 < np.abs(a - b).mean()  # natural variation between normal images


def test_prompt_catalog(default_root: Path) -> None:
    """prompts.yaml lists every category, its noun, normal phrases and the defect folders."""
    root = default_root
    catalog = yaml.safe_load((root / "prompts.yaml").read_text())
    assert catalog["version"] == 1
    assert sorted(catalog["categories"]) == sorted(DEMO_CATEGORIES)
    for name, entry in catalog["categories"].items():
        assert isinstance(entry["object"], str) and entry["object"]
        assert entry["normal"] and all("{object}" in phrase for phrase in entry["normal"])
        test_types = {p.name for p in (root / name / "test").iterdir()} - {"good"}
        assert set(entry["defects"]) == test_types
        assert all(phrases and all("{object}" in p for p in phrases) for phrases in entry["defects"].values())


def test_prompt_catalog_loads_in_the_prompt_library(default_root: Path) -> None:
    """The project's prompt library reads the demo catalog."""
    library_module = pytest.importorskip("anomalib_promptmad.prompts.library")
    root = default_root
    library = library_module.PromptLibrary.from_yaml(root / "prompts.yaml", packaged=False)
    prompts = library.prompts_for("fabric")
    assert set(prompts.defects) == {"stain", "hole"}
    assert any("striped woven fabric" in sentence for sentence in prompts.normal)


def test_deterministic_under_seed(tmp_path: Path) -> None:
    """The same seed writes identical files; another seed different ones."""
    kwargs = {"categories": ["circuit"], "image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defect": 1}
    first = _files(generate_demo_dataset(tmp_path / "a", seed=5, **kwargs))
    assert first == _files(generate_demo_dataset(tmp_path / "b", seed=5, **kwargs))
    assert first != _files(generate_demo_dataset(tmp_path / "c", seed=6, **kwargs))


_SMALL = {"categories": ["disc"], "image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defect": 1}


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    """A non-empty root is left alone unless overwrite=True, which replaces it."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"not empty.*overwrite=True"):
        generate_demo_dataset(root, **_SMALL)
    assert sorted(p.name for p in root.iterdir()) == ["mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no staging folder left

    generate_demo_dataset(root, overwrite=True, **_SMALL)
    assert sorted(p.name for p in root.iterdir()) == ["disc", "prompts.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_empty_existing_root_is_fine(tmp_path: Path) -> None:
    """An existing empty folder is used as root."""
    (tmp_path / "data").mkdir()
    generate_demo_dataset(tmp_path / "data", **_SMALL)
    assert (tmp_path / "data" / "disc" / "train" / "good" / "000.png").is_file()


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interrupted run leaves no root, parent or staging folder, and keeps old data."""
    calls = {"n": 0}
    save = demo._save_image

    def failing_save(image: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        save(image, path)

    monkeypatch.setattr(demo, "_save_image", failing_save)
    root = tmp_path / "new" / "nested" / "data"
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(root, **_SMALL)
    assert list(tmp_path.iterdir()) == []  # neither the root, nor its new parents, nor a staging folder

    existing = tmp_path / "old"
    generate_demo_dataset(existing, **{**_SMALL, "categories": ["fabric"]})
    before = _files(existing)
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        generate_demo_dataset(existing, overwrite=True, **_SMALL)
    assert _files(existing) == before  # the old dataset is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"categories": ["disc", "sprocket"]}, r"Unknown demo categories \['sprocket'\]; available"),
        ({"image_size": 16}, "at least 32"),
        ({"n_train": 0}, ">= 1"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    """Bad arguments raise before anything is written."""
    with pytest.raises(ValueError, match=match):
        generate_demo_dataset(tmp_path / "data", **kwargs)
    assert not (tmp_path / "data").exists()


def test_root_that_is_a_file(tmp_path: Path) -> None:
    """A root that is a file is refused."""
    (tmp_path / "data").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        generate_demo_dataset(tmp_path / "data", **_SMALL)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """promptmad-demo-data's main(): writes, refuses to overwrite (exit 2), overwrites on request."""
    root = tmp_path / "cli"
    assert main(["--root", str(root), "--image-size", "32", "--categories", "fabric", "circuit", "--seed", "3"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["circuit", "fabric", "prompts.yaml"]
    assert "Demo dataset written to" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(root), "--image-size", "32"])
    assert exit_info.value.code == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["--root", str(root), "--image-size", "32", "--categories", "disc", "--overwrite"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["disc", "prompts.yaml"]


def test_console_script(tmp_path: Path) -> None:
    """The installed console script runs and shows a progress bar."""
    script = shutil.which("promptmad-demo-data")
    command = [script] if script else [sys.executable, "-m", "anomalib_promptmad.data.demo"]
    result = subprocess.run(
        [*command, "--root", str(tmp_path / "d"), "--image-size", "32", "--categories", "disc"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "disc" / "ground_truth" / "scratch" / "000_mask.png").is_file()
    assert "100%" in result.stderr  # the tqdm bar
