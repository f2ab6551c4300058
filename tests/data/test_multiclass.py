# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Multi-class datamodules on the demo data: categories, bad inputs, splits, batches, file names."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from anomalib.data.utils import ValSplitMode

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.folder import MultiClassFolder
from anomalib_promptmad.data.mvtec import MultiClassMVTecAD
from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset

DEMO_CATEGORIES = ("disc", "fabric")  # as made by the demo_root fixture (checked in test_demo_spec)
N_TRAIN = 8
N_TEST = 3 + 2 * 2


def test_demo_spec(demo_spec: dict) -> None:
    """The constants of this module match the demo_root fixture."""
    assert demo_spec["categories"] == list(DEMO_CATEGORIES)
    assert (demo_spec["n_train"], demo_spec["n_test"]) == (N_TRAIN, N_TEST)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------- categories


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        ("all", ["disc", "fabric"]),
        (["fabric", "disc"], ["disc", "fabric"]),
        ("fabric", ["fabric"]),
        ("fabric, disc", ["disc", "fabric"]),
    ],
)
def test_categories_resolved(demo_root: Path, categories: str | list[str], expected: list[str]) -> None:
    """'all', lists, single and comma-separated names resolve to sorted categories."""
    datamodule = MultiClassMVTecAD(root=demo_root, categories=categories)
    assert datamodule.categories == expected
    assert datamodule.name == "demo_data"
    assert datamodule.category == ""


def test_all_skips_folders_without_the_layout(demo_root: Path, tmp_path: Path) -> None:
    """'all' ignores files, hidden and non-category folders; naming one explains why."""
    root = tmp_path / "root"
    shutil.copytree(demo_root / "disc", root / "disc")
    (root / "notes").mkdir()
    (root / ".cache" / "train" / "good").mkdir(parents=True)
    (root / "readme.txt").write_text("x")
    assert MultiClassMVTecAD(root=root).categories == ["disc"]
    with pytest.raises(ValueError, match=r"'notes' \(no images in train/good\).*Available categories: \['disc'\]"):
        MultiClassMVTecAD(root=root, categories=["disc", "notes"])


# ---------------------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails the test."""
    import anomalib.data.datamodules.image.mvtecad as mvtecad_module
    import anomalib.data.utils.download as download_module

    def forbidden(*args: object, **kwargs: object) -> None:
        pytest.fail(f"download attempted: {args} {kwargs}")

    monkeypatch.setattr(mvtecad_module, "download_and_extract", forbidden)
    monkeypatch.setattr(download_module, "download_and_extract", forbidden)


@pytest.mark.usefixtures("no_download")
@pytest.mark.parametrize("cls", [MultiClassMVTecAD, MultiClassFolder])
def test_missing_root(tmp_path: Path, cls: type) -> None:
    """A missing root raises at once, names the path and creates nothing."""
    root = tmp_path / "nowhere" / "MVTecAD"
    with pytest.raises(FileNotFoundError, match=r"does not exist.*Nothing is downloaded") as error:
        cls(root=root)
    assert str(root) in str(error.value)
    assert list(tmp_path.iterdir()) == []  # no folder created as a side effect


@pytest.mark.usefixtures("no_download")
@pytest.mark.parametrize("cls", [MultiClassMVTecAD, MultiClassFolder])
def test_empty_root(tmp_path: Path, cls: type) -> None:
    """An empty root raises at once and stays empty."""
    with pytest.raises(FileNotFoundError, match="holds no category folder") as error:
        cls(root=tmp_path)
    assert str(tmp_path) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_root_is_a_file(tmp_path: Path) -> None:
    """A root that is a file raises."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MultiClassMVTecAD(root=tmp_path / "file")


@pytest.mark.usefixtures("no_download")
@pytest.mark.parametrize("cls", [MultiClassMVTecAD, MultiClassFolder])
def test_unknown_category(demo_root: Path, cls: type) -> None:
    """An unknown category raises with the available ones listed; nothing changes on disk."""
    before = _listing(demo_root)
    with pytest.raises(
        ValueError, match=r"unknown or unusable category 'bottle' \(no such folder\).*\['disc', 'fabric'\]"
    ):
        cls(root=demo_root, categories=["disc", "bottle"])
    assert _listing(demo_root) == before


@pytest.mark.usefixtures("no_download")
def test_prepare_data_never_downloads(demo_root: Path, tmp_path: Path) -> None:
    """prepare_data only re-checks the data (anomalib's MVTecAD would download)."""
    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    datamodule = MultiClassMVTecAD(root=root, categories=["disc"])
    datamodule.prepare_data()
    shutil.rmtree(root / "disc")
    with pytest.raises(ValueError, match="'disc'"):
        datamodule.prepare_data()
    assert not (root / "disc").exists()


def test_masks_must_match_images(demo_root: Path, tmp_path: Path) -> None:
    """A category whose masks do not match its anomalous images is reported."""
    root = tmp_path / "root"
    shutil.copytree(demo_root / "disc", root / "disc")
    next((root / "disc" / "ground_truth" / "scratch").iterdir()).unlink()
    with pytest.raises(FileNotFoundError, match=r"disc: 2 images in test/scratch but 1 masks"):
        MultiClassMVTecAD(root=root)
    with pytest.raises(FileNotFoundError, match=r"disc: 4 anomalous images but 3 masks"):
        MultiClassFolder(root=root)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_split_mode": "from_dir"}, "no validation folders"),
        ({"val_split_ratio": 1.0}, "val_split_ratio"),
        ({"test_split_ratio": 0.0}, "test_split_ratio"),
    ],
)
def test_bad_options(demo_root: Path, kwargs: dict, match: str) -> None:
    """Unsupported split options are rejected in __init__."""
    with pytest.raises(ValueError, match=match):
        MultiClassMVTecAD(root=demo_root, **kwargs)


# ---------------------------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def setup_datamodule(demo_root: Path) -> MultiClassMVTecAD:
    """The demo datamodule with default splits (a quarter of the training normals validate)."""
    datamodule = MultiClassMVTecAD(
        root=demo_root, num_workers=0, train_batch_size=4, eval_batch_size=5, val_split_ratio=0.25
    )
    datamodule.setup()
    return datamodule


def _paths(dataset: object, label: int | None = None) -> set[str]:
    samples = dataset.samples  # type: ignore[attr-defined]
    if label is not None:
        samples = samples[samples.label_index == label]
    return set(samples.image_path)


def test_default_split_is_leak_free_and_per_category(setup_datamodule: MultiClassMVTecAD, demo_root: Path) -> None:
    """Validation holds training normals and their synthetic anomalies only, per category."""
    datamodule = setup_datamodule
    assert datamodule.val_split_mode == ValSplitMode.SYNTHETIC
    train, val, test = datamodule.train_data, datamodule.val_data, datamodule.test_data
    assert isinstance(val, SyntheticValidationDataset)
    held_out = round(0.25 * N_TRAIN)
    for category in DEMO_CATEGORIES:
        assert (train.samples.category == category).sum() == N_TRAIN - held_out
        assert ((val.samples.category == category) & (val.samples.label_index == 0)).sum() == held_out
        assert ((val.samples.category == category) & (val.samples.label_index == 1)).sum() == held_out
        assert (test.samples.category == category).sum() == N_TEST
    all_train = {str(p.resolve()) for p in demo_root.glob("*/train/good/*.png")}
    assert _paths(val) <= all_train  # validation comes from training normals only
    assert not _paths(val) & _paths(train)
    assert _paths(train) | _paths(val) == all_train
    assert _paths(test) == {str(p.resolve()) for p in demo_root.glob("*/test/*/*.png")}


def test_splits_are_deterministic(demo_root: Path, setup_datamodule: MultiClassMVTecAD) -> None:
    """Splits depend on the seed only."""
    again = MultiClassMVTecAD(root=demo_root, val_split_ratio=0.25)
    again.setup()
    assert _paths(again.val_data) == _paths(setup_datamodule.val_data)
    other = MultiClassMVTecAD(root=demo_root, val_split_ratio=0.25, seed=1)
    other.setup()
    assert _paths(other.val_data) != _paths(setup_datamodule.val_data)


def test_from_test_split_warns_and_stays_per_category(demo_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """from_test warns about leakage and keeps both labels of each category."""
    datamodule = MultiClassMVTecAD(root=demo_root, val_split_mode="from_test", val_split_ratio=0.4)
    with caplog.at_level(logging.WARNING):
        datamodule.setup()
    assert "tuned on test images" in caplog.text
    val, test = datamodule.val_data, datamodule.test_data
    assert not _paths(val) & _paths(test)
    for category in DEMO_CATEGORIES:
        assert set(val.samples[val.samples.category == category].label_index) == {0, 1}


def test_batches_map_to_categories(setup_datamodule: MultiClassMVTecAD) -> None:
    """Every batch path maps to its category, by the MVTec rule and by the root rule."""
    datamodule = setup_datamodule
    for loader, expected in (
        (datamodule.train_dataloader(), None),
        (datamodule.val_dataloader(), None),
        (datamodule.test_dataloader(), N_TEST),
    ):
        counts: dict[str, int] = {}
        for batch in loader:
            assert batch.image.shape[1:] == (3, 64, 64)
            for path in batch.image_path:
                category = category_from_path(path)
                assert category == datamodule.category_of(path)
                counts[category] = counts.get(category, 0) + 1
        assert sorted(counts) == list(DEMO_CATEGORIES)
        if expected is not None:
            assert set(counts.values()) == {expected}


def test_val_batches_hold_synthetic_anomalies(setup_datamodule: MultiClassMVTecAD) -> None:
    """Validation batches mix normal images and synthetic anomalies with masks."""
    batch = next(iter(setup_datamodule.val_dataloader()))
    anomalous = batch.gt_label.bool()
    assert anomalous.any() and (~anomalous).any()
    assert (batch.gt_mask[anomalous].flatten(1).sum(1) > 0).all()
    assert batch.gt_mask[~anomalous].sum() == 0


# ---------------------------------------------------------------------------------------------- folder


def test_folder_defaults_equal_mvtec(setup_datamodule: MultiClassMVTecAD, demo_root: Path) -> None:
    """MultiClassFolder with its MVTec-like defaults yields MultiClassMVTecAD's samples."""
    folder = MultiClassFolder(root=demo_root, val_split_ratio=0.25)
    folder.setup()
    assert folder.categories == setup_datamodule.categories
    for split in ("train_data", "val_data", "test_data"):
        ours, theirs = getattr(folder, split).samples, getattr(setup_datamodule, split).samples
        assert list(ours.image_path) == list(theirs.image_path)
        assert list(ours.label_index) == list(theirs.label_index)
        assert list(ours.mask_path.fillna("")) == list(theirs.mask_path.fillna(""))


def test_folder_custom_layout(demo_root: Path, tmp_path: Path) -> None:
    """<root>/<category>/{good,defect,mask}: no normal test folder, so test normals come from train."""
    root = tmp_path / "custom"
    for category in DEMO_CATEGORIES:
        source = demo_root / category
        shutil.copytree(source / "train" / "good", root / category / "good")
        for defect in (d.name for d in (source / "test").iterdir() if d.name != "good"):
            for image in (source / "test" / defect).iterdir():
                (root / category / "defect").mkdir(parents=True, exist_ok=True)
                (root / category / "mask").mkdir(parents=True, exist_ok=True)
                shutil.copy(image, root / category / "defect" / f"{defect}_{image.name}")
                mask = source / "ground_truth" / defect / f"{image.stem}_mask.png"
                shutil.copy(mask, root / category / "mask" / f"{defect}_{image.name}")
    datamodule = MultiClassFolder(
        root=root,
        normal_dir="good",
        abnormal_dir="defect",
        normal_test_dir=None,
        mask_dir="mask",
        test_split_ratio=0.25,
        val_split_ratio=0.25,
        num_workers=0,
        eval_batch_size=100,
    )
    assert datamodule.categories == list(DEMO_CATEGORIES)
    datamodule.setup()
    test = datamodule.test_data.samples
    for category in DEMO_CATEGORIES:
        rows = test[test.category == category]
        assert (rows.label_index == 0).sum() == 2  # 25 % of 8 training normals
        assert (rows.label_index == 1).sum() == 4
    assert not _paths(datamodule.test_data) & _paths(datamodule.train_data)
    batch = next(iter(datamodule.test_dataloader()))
    assert {datamodule.category_of(p) for p in batch.image_path} == set(DEMO_CATEGORIES)
    assert (batch.gt_mask[batch.gt_label.bool()].flatten(1).sum(1) > 0).all()
    with pytest.raises(ValueError, match="MVTec layout"):
        category_from_path(batch.image_path[0])  # this layout needs the root


# ---------------------------------------------------------------------------------------------- visualizer


def test_visualizer_file_names_do_not_collide(setup_datamodule: MultiClassMVTecAD, tmp_path: Path) -> None:
    """Anomalib's ImageVisualizer names files with generate_output_filename(datamodule.name, .category)."""
    from anomalib.utils.path import generate_output_filename

    datamodule = setup_datamodule
    paths = sorted(_paths(datamodule.test_data))
    outputs = {
        generate_output_filename(path, tmp_path, datamodule.name, datamodule.category, mkdir=False) for path in paths
    }
    assert len(outputs) == len(paths)
    same_name = [p for p in paths if p.endswith("/test/good/000.png")]
    assert len(same_name) == 2
    named = [
        generate_output_filename(p, tmp_path, datamodule.name, datamodule.category, mkdir=False) for p in same_name
    ]
    assert [str(p.relative_to(tmp_path)) for p in named] == ["disc/test/good/000.png", "fabric/test/good/000.png"]


# ---------------------------------------------------------------------------------------------- CLI


def test_instantiable_from_config(demo_root: Path) -> None:
    """The anomalib CLI builds datamodules with jsonargparse from a class path and init args."""
    from anomalib.data import AnomalibDataModule
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    config = parser.parse_object(
        {
            "data": {
                "class_path": "anomalib_promptmad.data.mvtec.MultiClassMVTecAD",
                "init_args": {"root": str(demo_root), "categories": ["fabric"], "val_split_mode": "synthetic"},
            },
        },
    )
    datamodule = parser.instantiate_classes(config).data
    assert isinstance(datamodule, MultiClassMVTecAD)
    assert datamodule.categories == ["fabric"]


@pytest.mark.parametrize("datamodule_class", [MultiClassMVTecAD, MultiClassFolder])
def test_cli_sees_the_shared_arguments_forwarded_as_kwargs(datamodule_class: type) -> None:
    """The shared settings, declared once on the base, are the CLI's arguments of each datamodule, with defaults."""
    import inspect

    from jsonargparse import ArgumentParser

    from anomalib_promptmad.data.datamodule import MultiClassDataModule

    parser = ArgumentParser()
    parser.add_class_arguments(datamodule_class, "data")
    defaults = parser.get_defaults().data
    parameters = list(inspect.signature(MultiClassDataModule.__init__).parameters.values())
    assert [parameter.name for parameter in parameters[:3]] == ["self", "root", "categories"]
    shared = parameters[3:]  # each subclass declares root and categories itself
    assert shared[-1].name == "validate_files"
    for parameter in shared:
        assert defaults[parameter.name] == parameter.default, parameter.name


def test_synthetic_test_split(demo_root: Path) -> None:
    """test_split_mode='synthetic' tests on each test normal and a synthetic anomaly of it."""
    datamodule = MultiClassMVTecAD(root=demo_root, test_split_mode="synthetic", val_split_mode="none")
    datamodule.setup()
    test = datamodule.test_data
    assert isinstance(test, SyntheticValidationDataset)
    assert set(test.samples.label) == {"good", "synthetic"}
    assert len(test) == 2 * 3 * len(DEMO_CATEGORIES)


def test_worker_processes_give_the_same_batches(demo_root: Path) -> None:
    """Datasets pickle into dataloader workers; synthetic anomalies do not depend on the worker."""
    batches = []
    for workers in (0, 2):
        datamodule = MultiClassMVTecAD(root=demo_root, num_workers=workers, eval_batch_size=8, val_split_ratio=0.25)
        datamodule.setup()
        batches.append(next(iter(datamodule.val_dataloader())))
    assert batches[0].image_path == batches[1].image_path
    assert torch.equal(batches[0].image, batches[1].image)
    assert torch.equal(batches[0].gt_mask, batches[1].gt_mask)


# ---------------------------------------------------------------------------------------------- several roots


@pytest.mark.parametrize("datamodule_class", [MultiClassMVTecAD, MultiClassFolder])
def test_categories_from_several_roots_make_one_unified_datamodule(
    demo_root: Path, tmp_path: Path, datamodule_class: type
) -> None:
    """Product lines stored apart: each category is read from its own root; per-category names stay right."""
    first, second = tmp_path / "line_a", tmp_path / "line_b"
    shutil.copytree(demo_root / "disc", first / "disc")
    shutil.copytree(demo_root / "fabric", second / "fabric")
    datamodule = datamodule_class(root=[first, second], categories="all", num_workers=0, eval_batch_size=64)
    assert datamodule.categories == ["disc", "fabric"]
    assert datamodule.category_roots == {"disc": first, "fabric": second}
    datamodule.setup()
    paths = [datamodule.test_data[index].image_path for index in range(len(datamodule.test_data))]
    assert {datamodule.category_of(path) for path in paths} == {"disc", "fabric"}
    for path in paths:
        root = first if datamodule.category_of(path) == "disc" else second
        assert Path(path).resolve().is_relative_to(root.resolve())


def test_a_category_under_two_roots_or_none_is_one_clear_error(demo_root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "line_a", tmp_path / "line_b"
    shutil.copytree(demo_root / "disc", first / "disc")
    shutil.copytree(demo_root / "disc", second / "disc")
    shutil.copytree(demo_root / "fabric", second / "fabric")
    with pytest.raises(ValueError, match=r"'disc' in .*line_a.*line_b"):
        MultiClassMVTecAD(root=[first, second], categories=["disc", "fabric"])
    assert MultiClassMVTecAD(root=[first, second], categories=["fabric"]).categories == ["fabric"]
    with pytest.raises(ValueError, match=r"'screw' \(no such folder\) under .*line_a.*line_b"):
        MultiClassMVTecAD(root=[first, second], categories=["screw"])
    with pytest.raises(FileNotFoundError, match="missing"):
        MultiClassMVTecAD(root=[first, tmp_path / "missing"], categories=["disc"])


# ---------------------------------------------------------------------------------------------- symbolic links


@pytest.mark.parametrize("datamodule_class", [MultiClassMVTecAD, MultiClassFolder])
def test_symlinked_category_folders_keep_their_link_names(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, datamodule_class: type
) -> None:
    """A root assembled from links (``widget -> .../disc``): categories and paths are the links', not the targets'.

    anomalib resolves dataset paths, which used to turn ``<root>/widget/test/...`` into ``.../disc/test/...``:
    outside the root, and under another name. The root is also given relative, as on a command line.
    """
    root = tmp_path / "assembled"
    root.mkdir()
    links = {"widget": "disc", "cloth": "fabric"}
    for link, target in links.items():
        (root / link).symlink_to(demo_root / target, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    datamodule = datamodule_class(root="assembled", num_workers=0, eval_batch_size=100)
    assert datamodule.categories == sorted(links)
    datamodule.setup()
    for split in ("train_data", "val_data", "test_data"):
        samples = getattr(datamodule, split).samples
        paths = [str(path) for path in samples.image_path]
        assert all(path.startswith(str(tmp_path / "assembled") + "/") for path in paths), paths[:2]
        assert {datamodule.category_of(path) for path in paths} == set(links)
        assert {category_from_path(path) for path in paths} == set(links)  # the MVTec rule PromptMAD uses
    batch = next(iter(datamodule.test_dataloader()))  # the link paths read: images and their masks
    assert (batch.gt_mask[batch.gt_label.bool()].flatten(1).sum(1) > 0).all()
