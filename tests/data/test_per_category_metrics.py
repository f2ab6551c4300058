# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category metrics: a real Padim run through anomalib's Engine, and the score handling."""

from __future__ import annotations

import csv
import logging
import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalib_promptmad.callbacks.per_category_metrics import IMAGE_METRICS, PIXEL_METRICS, PerCategoryMetrics
from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

CATEGORIES = ["disc", "fabric"]


@pytest.fixture(scope="module")
def padim_run(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Anomalib's Padim (random ResNet-18, 64 x 64) fitted and tested on two demo categories, on CPU."""
    from anomalib.engine import Engine
    from anomalib.models import Padim

    datamodule = MultiClassMVTecAD(
        root=demo_root, num_workers=0, train_batch_size=8, eval_batch_size=8, val_split_ratio=0.25
    )
    model = Padim(
        backbone="resnet18",
        pre_trained=False,
        layers=["layer1", "layer2"],
        pre_processor=Padim.configure_pre_processor(image_size=(64, 64)),
    )
    callback = PerCategoryMetrics()
    engine = Engine(
        callbacks=[callback],
        default_root_dir=tmp_path_factory.mktemp("results"),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
    )
    engine.fit(model, datamodule=datamodule)
    logged = engine.test(model, datamodule=datamodule)[0]
    return {
        "callback": callback,
        "logged": logged,
        "root_dir": Path(engine.trainer.default_root_dir),
        "datamodule": datamodule,
    }


@pytest.mark.slow
def test_padim_per_category_rows(padim_run: dict) -> None:
    """Per-category rows and their mean are computed, logged and plausible."""
    callback: PerCategoryMetrics = padim_run["callback"]
    assert list(callback.results) == [*CATEGORIES, "mean"]
    for category in CATEGORIES:
        row = callback.results[category]
        assert row["n_images"] == 7 and row["n_anomalous"] == 4
        for metric in (*IMAGE_METRICS, *PIXEL_METRICS):
            assert 0.0 <= row[metric] <= 1.0, (category, metric)
            assert padim_run["logged"][f"{category}/{metric}"] == pytest.approx(row[metric])
    for metric in (*IMAGE_METRICS, *PIXEL_METRICS):
        expected = sum(callback.results[c][metric] for c in CATEGORIES) / 2
        assert callback.results["mean"][metric] == pytest.approx(expected)
        assert padim_run["logged"][f"mean/{metric}"] == pytest.approx(expected)
    # A random-weight Padim still localises the demo defects far better than chance.
    assert callback.results["mean"]["pixel_AUROC"] > 0.8


@pytest.mark.slow
def test_padim_scores_were_captured_raw(padim_run: dict) -> None:
    """Engine callbacks run before the model's post-processor: raw distances, later replaced."""
    assert padim_run["callback"].captured_raw_scores is True


@pytest.mark.slow
def test_padim_csv(padim_run: dict) -> None:
    """The CSV holds the same rows, written atomically to the run's folder."""
    path = padim_run["root_dir"] / "per_category_metrics.csv"
    assert padim_run["callback"].csv_path == path
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["category"] for r in rows] == [*CATEGORIES, "mean"]
    assert rows[-1]["n_images"] == "14"
    for row in rows:
        assert float(row["pixel_AUPRO"]) == pytest.approx(
            padim_run["callback"].results[row["category"]]["pixel_AUPRO"], abs=1e-6
        )
    assert not list(path.parent.glob(".per_category_metrics.csv.*"))  # no temporary file left


@pytest.mark.slow
def test_padim_visualizer_images_of_both_categories(padim_run: dict, demo_root: Path) -> None:
    """The ImageVisualizer of anomalib writes one file per test image, categories kept apart."""
    images = padim_run["root_dir"] / "images"
    written = sorted(str(p.relative_to(images)) for p in images.rglob("*.png"))
    expected = sorted(str(p.relative_to(demo_root)) for p in demo_root.glob("*/test/*/*.png"))
    assert written == expected  # one file per test image, kept apart by category


# ---------------------------------------------------------------------------------------------- unit level


def _run(callback: PerCategoryMetrics, batches: list[SimpleNamespace], tmp_path: Path, post_process=None) -> dict:
    """Drive the callback's hooks like Lightning does, optionally post-processing after it."""
    trainer = SimpleNamespace(datamodule=None, default_root_dir=str(tmp_path))
    module = SimpleNamespace(log_dict=lambda values, **kwargs: module.logged.update(values), logged={})
    callback.on_test_start(trainer, module)
    for index, batch in enumerate(batches):
        callback.on_test_batch_start(trainer, module, batch, index)
        callback.on_test_batch_end(trainer, module, batch, batch, index)
        if post_process is not None:
            post_process(batch)
    callback.on_test_epoch_end(trainer, module)
    return module.logged


def _batch(
    category: str, scores: torch.Tensor, labels: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor
) -> SimpleNamespace:
    paths = [
        f"/data/{category}/test/{'bad' if label else 'good'}/{i:03d}.png" for i, label in enumerate(labels.tolist())
    ]
    return SimpleNamespace(
        image_path=paths,
        pred_score=scores,
        gt_label=labels,
        anomaly_map=maps,
        gt_mask=masks,
        pred_label=None,
        pred_mask=None,
    )


def test_raw_distances_keep_their_order(tmp_path: Path) -> None:
    """Scores like Padim's (3 to 800) would saturate under torchmetrics' sigmoid; here AUROC/AP are exact."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1] * 20)
    scores = 3 + 400 * torch.rand(40, generator=generator) + 300 * labels
    masks = torch.zeros(40, 16, 16, dtype=torch.bool)
    masks[labels.bool(), 4:8, 4:8] = True
    maps = 5 + 100 * torch.rand(40, 1, 16, 16, generator=generator) + 60 * masks.unsqueeze(1)
    batches = [
        _batch("screw", scores[i : i + 8], labels[i : i + 8], maps[i : i + 8], masks[i : i + 8])
        for i in range(0, 40, 8)
    ]
    callback = PerCategoryMetrics()
    logged = _run(callback, batches, tmp_path)
    assert logged["screw/image_AUROC"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert logged["screw/image_AUPR"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    pixel_auroc = roc_auc_score(masks.flatten(), maps.flatten())
    assert logged["screw/pixel_AUROC"] == pytest.approx(pixel_auroc, abs=1e-4)
    assert 0.5 < logged["screw/image_AUROC"] < 1.0  # a real, non-saturated value
    assert "screw/image_F1Score" not in logged  # no threshold given by a post-processor
    assert callback.captured_raw_scores is False


def test_post_processed_fields_are_read_after_the_batch(tmp_path: Path) -> None:
    """pred_label/pred_mask set by a later hook (anomalib's PostProcessor) feed the F1 scores."""
    labels = torch.tensor([0, 0, 1, 1])
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[2:, :4] = True
    batch = _batch("nut", torch.tensor([10.0, 20.0, 30.0, 40.0]), labels, masks.float() * 50 + 1, masks)

    def post_process(b: SimpleNamespace) -> None:
        b.pred_score = (b.pred_score / 100).clamp(0, 1)  # replaced, as PostProcessor does
        b.pred_label = torch.tensor([False, True, True, True])
        b.pred_mask = b.gt_mask.clone()

    callback = PerCategoryMetrics()
    logged = _run(callback, [batch], tmp_path, post_process=post_process)
    assert callback.captured_raw_scores is True
    assert logged["nut/image_F1Score"] == pytest.approx(0.8)  # precision 2/3, recall 1
    assert logged["nut/pixel_F1Score"] == pytest.approx(1.0)
    assert logged["nut/image_AUROC"] == pytest.approx(1.0)


def test_categories_without_anomalies_and_map_downsampling(tmp_path: Path) -> None:
    """Undefined metrics are NaN and left out of the mean; large maps are downsampled."""
    generator = torch.Generator().manual_seed(1)
    masks = torch.zeros(6, 64, 64, dtype=torch.bool)
    masks[3:, 10:30, 10:30] = True
    good_only = _batch(
        "gear", torch.rand(3, generator=generator), torch.zeros(3, dtype=torch.long), torch.rand(3, 64, 64), masks[:3]
    )
    mixed = _batch(
        "bolt",
        torch.tensor([1.0, 2, 3, 4, 5, 6]),
        torch.tensor([0, 0, 0, 1, 1, 1]),
        masks.float() + 0.1 * torch.rand(6, 64, 64),
        masks,
    )
    callback = PerCategoryMetrics(max_map_size=32, csv_path=tmp_path / "out" / "table.csv")
    logged = _run(callback, [good_only, mixed], tmp_path)
    assert math.isnan(logged["gear/image_AUROC"]) and math.isnan(logged["gear/pixel_AUROC"])
    assert logged["bolt/image_AUROC"] == pytest.approx(1.0)
    assert logged["bolt/pixel_AUROC"] == pytest.approx(1.0)
    assert logged["mean/image_AUROC"] == pytest.approx(1.0)  # NaN categories are left out of the mean
    assert callback._states["bolt"].maps[0].shape[-2:] == (32, 32)
    assert (tmp_path / "out" / "table.csv").is_file()


def test_root_rule_for_custom_layouts(tmp_path: Path) -> None:
    """A root makes custom layouts work; without it their paths are rejected."""
    batch = _batch(
        "x", torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), torch.rand(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool)
    )
    batch.image_path = ["/data/custom/screws/good/a.png", "/data/custom/screws/defect/b.png"]
    logged = _run(PerCategoryMetrics(root="/data/custom"), [batch], tmp_path)
    assert logged["screws/image_AUROC"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="MVTec layout"):
        _run(PerCategoryMetrics(), [batch], tmp_path)


def test_log_names_where_the_values_survive_a_temporary_root(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A TemporaryDirectory root (anomalib benchmark's): the log says it may go, and where the values stay."""
    batch = _batch("nut", torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), torch.rand(2, 8, 8), torch.zeros(2, 8, 8))
    with caplog.at_level(logging.INFO, logger="anomalib_promptmad.callbacks.per_category_metrics"):
        _run(PerCategoryMetrics(), [batch], tmp_path)  # pytest's own temporary folder: a plain message
        assert caplog.messages[-1] == f"Per-category metrics written to {tmp_path / 'per_category_metrics.csv'}"
        with tempfile.TemporaryDirectory() as temporary:
            _run(PerCategoryMetrics(), [batch], Path(temporary) / "PromptMAD" / "v0")
            message = caplog.messages[-1]
    assert f"inside the temporary folder {temporary}, which its creator may delete" in message
    assert "returned by the test as <category>/<metric> and mean/<metric>" in message
    assert "columns of its results.csv" in message
