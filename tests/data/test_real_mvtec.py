# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The multi-class datamodules on the real MVTec AD bottle and pill (skipped where the data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.folder import MultiClassFolder
from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

pytestmark = pytest.mark.real_data

# Images per category in MVTec AD: train normals, test normals, test anomalies.
COUNTS = {"bottle": (209, 20, 63), "pill": (267, 26, 141)}


@pytest.fixture(scope="module")
def real_datamodule(real_mvtec_root: Path) -> MultiClassMVTecAD:
    """Bottle and pill, default splits."""
    datamodule = MultiClassMVTecAD(
        root=real_mvtec_root, categories=["bottle", "pill"], num_workers=0, eval_batch_size=16
    )
    datamodule.setup()
    return datamodule


def test_sample_counts_per_split(real_datamodule: MultiClassMVTecAD) -> None:
    """Per-category counts of the real data in every split."""
    datamodule = real_datamodule
    assert datamodule.categories == ["bottle", "pill"]
    # license.txt / readme.txt are not categories
    assert set(MultiClassMVTecAD(root=datamodule.root, categories="all").categories) >= {"bottle", "pill"}
    train, val, test = (d.samples for d in (datamodule.train_data, datamodule.val_data, datamodule.test_data))
    for category, (n_train, n_good, n_defect) in COUNTS.items():
        held_out = round(0.1 * n_train)  # bottle 21, pill 27
        assert (train.category == category).sum() == n_train - held_out
        assert ((val.category == category) & (val.label_index == 0)).sum() == held_out
        assert ((val.category == category) & (val.label_index == 1)).sum() == held_out
        rows = test[test.category == category]
        assert ((rows.label_index == 0).sum(), (rows.label_index == 1).sum()) == (n_good, n_defect)
        assert rows[rows.label_index == 1].mask_path.map(lambda p: Path(p).is_file()).all()
    assert len(train) == 428 and len(val) == 96 and len(test) == 250


def test_real_batches(real_datamodule: MultiClassMVTecAD) -> None:
    """Real batches and synthetic validation anomalies map to their categories."""
    batch = next(iter(real_datamodule.test_dataloader()))
    assert batch.image.shape[1:] == (3, 256, 256)
    assert {category_from_path(p) for p in batch.image_path} <= {"bottle", "pill"}
    val = real_datamodule.val_data
    anomalous = [i for i in range(len(val)) if val.samples.label_index[i] == 1]
    for index in (anomalous[0], anomalous[-1]):
        item = val[index]
        assert category_from_path(item.image_path) in {"bottle", "pill"}
        assert item.gt_mask.sum() > 0


def test_folder_matches_mvtec_on_real_data(real_datamodule: MultiClassMVTecAD, real_mvtec_root: Path) -> None:
    """MultiClassFolder reads the real test set exactly as MultiClassMVTecAD."""
    folder = MultiClassFolder(root=real_mvtec_root, categories=["bottle", "pill"])
    folder.setup()
    ours, theirs = folder.test_data.samples, real_datamodule.test_data.samples
    assert list(ours.image_path) == list(theirs.image_path)
    assert list(ours.mask_path.fillna("")) == list(theirs.mask_path.fillna(""))


def test_categories_from_the_two_shared_roots(real_mvtec_root: Path) -> None:
    """MVTec AD's bottle and MVTec 3D-AD's tire (RGB) in one unified datamodule, as the benchmark uses them."""
    tire_root = real_mvtec_root.parent / "mvtec_3d_ad_rgb_256"
    if not (tire_root / "tire" / "train").is_dir():
        pytest.skip(f"MVTec 3D-AD tire not found at {tire_root}")
    datamodule = MultiClassMVTecAD(root=[real_mvtec_root, tire_root], categories=["bottle", "tire"], num_workers=0)
    assert datamodule.category_roots == {"bottle": real_mvtec_root, "tire": tire_root}
    datamodule.setup()
    assert set(datamodule.test_data.samples.category) == {"bottle", "tire"}
    assert {datamodule.category_of(path) for path in datamodule.test_data.samples.image_path} == {"bottle", "tire"}
