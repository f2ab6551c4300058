# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""anomalib's own grid runner (``anomalib benchmark``) with the grids in ``configs/anomalib_benchmark/``.

anomalib 2.7's ``BenchmarkJob.collect`` builds its table from the first job's keys, so a grid works only when
every job reports the same keys (its flattened arguments and its test metrics); the README's example grids keep
to that, and these tests check it through anomalib's own grid expansion, and by running one on tiny data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from anomalib.pipelines.benchmark.generator import BenchmarkJobGenerator
from anomalib.pipelines.benchmark.job import BenchmarkJob
from huggingface_hub import constants

from anomalib_promptmad import generate_demo_dataset
from anomalib_promptmad.backbone.hub_cache import install_in_hub_cache

REPO_ROOT = Path(__file__).resolve().parents[2]
GRIDS = REPO_ROOT / "configs" / "anomalib_benchmark"

# grid file -> (model class of every job, the argument the grid varies, its values)
EXPECTED = {
    "promptmad_demo.yaml": ("PromptMAD", "model.init_args.use_text_prompts", [False, True]),
    "padim_demo.yaml": ("Padim", "model.init_args.n_features", [50, 100]),
}

# what makes the PromptMAD grid tiny (64 px, 1 epoch, the model of tests/model/conftest.py); nothing else changes
TINY_PROMPTMAD = {
    "image_size": 64,
    "hidden_dim": 32,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "dim_feedforward": 64,
    "segmentor_dim": 32,
    "diffusion_steps": 3,
    "calibration_images": 8,
    "max_epochs": 1,
}


def _tiny_demo(cwd: Path) -> Path:
    """The grids' ``datasets/demo``, relative to ``cwd``: 2 categories, 64 px, a few images each."""
    return generate_demo_dataset(
        cwd / "datasets" / "demo", categories=["disc", "fabric"], image_size=64, n_train=6, n_test_good=2,
        n_test_defect=1,
    )  # fmt: skip


def test_every_shipped_grid_is_tested() -> None:
    """A new grid in configs/anomalib_benchmark/ needs its row in EXPECTED."""
    assert sorted(path.name for path in GRIDS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("grid", sorted(EXPECTED))
def test_grid_expands_to_jobs_that_anomalib_can_collect(
    grid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stock generator builds every job (models offline, datamodules); all report the same argument keys."""
    monkeypatch.chdir(tmp_path)
    _tiny_demo(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    install_in_hub_cache("tf_efficientnet_lite2")  # what `promptmad-weights install` does, for Padim
    config = yaml.safe_load((GRIDS / grid).read_text(encoding="utf-8"))
    assert config["accelerator"] == "cpu"

    jobs = list(BenchmarkJobGenerator("cpu").generate_jobs(config["benchmark"], None))
    model_class, varied, values = EXPECTED[grid]
    assert [type(job.model).__name__ for job in jobs] == [model_class] * len(values)
    assert [job.flat_cfg[varied] for job in jobs] == values
    assert {type(job.datamodule).__name__ for job in jobs} == {"MultiClassMVTecAD"}
    keys = [sorted(job.flat_cfg) for job in jobs]
    assert all(job_keys == keys[0] for job_keys in keys), "anomalib's collect needs the same keys in every job"


def test_anomalib_collects_only_jobs_with_the_same_keys() -> None:
    """What the README says of anomalib 2.7's result collection: the first job's keys make the columns.

    An extra key in a later job is a KeyError, a missing one a ValueError (columns of unequal length): why
    PromptMAD and Padim, which take different arguments and log different metrics, cannot share one grid.
    """
    promptmad = {"model.class_path": "PromptMAD", "model.init_args.max_epochs": 1, "mean/pixel_AUROC": 0.9}
    padim = {"model.class_path": "Padim", "model.init_args.pre_trained": True, "pixel_AUROC": 0.9}
    with pytest.raises(KeyError, match=r"model\.init_args\.pre_trained"):
        BenchmarkJob.collect([promptmad, padim])
    with pytest.raises(ValueError, match="same length"):
        BenchmarkJob.collect([promptmad, {**promptmad, "model.init_args.max_epochs": 2}, {"model.class_path": "x"}])
    assert len(BenchmarkJob.collect([promptmad, {**promptmad, "model.init_args.max_epochs": 2}])) == 2


@pytest.mark.slow
def test_stock_anomalib_benchmark_runs_the_promptmad_grid(tmp_path: Path) -> None:
    """`anomalib benchmark --config` with the PromptMAD grid, made tiny: both jobs collected in results.csv."""
    _tiny_demo(tmp_path)
    config = yaml.safe_load((GRIDS / "promptmad_demo.yaml").read_text(encoding="utf-8"))
    config["benchmark"]["model"]["init_args"].update(TINY_PROMPTMAD)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    anomalib = str(Path(sys.executable).with_name("anomalib"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [anomalib, "benchmark", "--config", str(grid)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    log = (tmp_path / "runs" / "pipeline.log").read_text(encoding="utf-8")
    assert "There were some errors" not in output, log[-6000:]  # anomalib exits 0 either way
    assert result.returncode == 0

    (table,) = (tmp_path / "runs" / "benchmark").glob("*/results.csv")
    results = pd.read_csv(table)
    assert results["model.class_path"].tolist() == ["PromptMAD", "PromptMAD"]
    assert results["model.init_args.use_text_prompts"].tolist() == [False, True]
    for column in ("image_AUROC", "pixel_AUROC", "mean/pixel_AUROC", "disc/pixel_AUPR", "fabric/image_AUROC"):
        assert results[column].between(0, 1).all(), column
    # the per-category CSV went with anomalib's temporary folder: the log says so and where the values are
    assert "inside the temporary folder" in log
    assert "columns of its results.csv" in log
