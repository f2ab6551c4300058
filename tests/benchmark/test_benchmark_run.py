# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The benchmark end to end on tiny generated data: tiny PromptMAD + Padim, one job made to fail, a rerun.

One run (module fixture, through the Python API) serves every check; the rerun goes through the console
command in a fresh process. Each job is a fresh process that imports anomalib (most of a job's time here).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml

from anomalib_promptmad.benchmark import BenchmarkResult, load_config, run_benchmark
from anomalib_promptmad.benchmark.metrics import QUALITY_METRICS
from anomalib_promptmad.benchmark.samples import load_samples

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO_ROOT / "configs" / "benchmark" / "demo_tiny.yaml"
BROKEN = "demo__unified__Padim-broken"
FINISHED = [
    "demo__unified__PromptMAD",
    "demo__unified__Padim",
    "demo__per_class__Padim__disc",
    "demo__per_class__Padim__fabric",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BenchmarkResult]:
    """The tiny config plus a Padim asking for more features than its layers have (fails in its job), run once."""
    folder = tmp_path_factory.mktemp("benchmark")
    data = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    data["models"].append(
        {
            "name": "Padim-broken",
            "class_path": "Padim",
            "settings": ["unified"],
            "init_args": {"n_features": 100000},
        }
    )
    config = folder / "tiny_with_failure.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config, run_benchmark(load_config(config), folder / "run")


def _rows(result: BenchmarkResult) -> list[dict[str, str]]:
    with result.report.csv.open(encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_failed_job_is_reported_by_name_and_error(run: tuple[Path, BenchmarkResult]) -> None:
    """The broken job fails alone; the others finish; the report names it with the error's last line."""
    _, result = run
    assert not result.ok
    assert [o.spec.id for o in result.failed] == [BROKEN]
    assert sorted(o.spec.id for o in result.outcomes if o.ok) == sorted(FINISHED)
    error = result.failed[0].error
    # anomalib's own message, as the last line of the job's traceback
    assert error is not None and error.startswith("ValueError: ") and "n_features" in error and "100000" in error
    assert error == json.loads((result.output_dir / "jobs" / BROKEN / "error.json").read_text())["last_line"]
    markdown = result.report.markdown.read_text(encoding="utf-8")
    assert "## Failed jobs (1 of 5)" in markdown
    assert f"`{BROKEN}`: {error}" in markdown
    assert not (result.output_dir / "jobs" / BROKEN / "result.json").exists()


def test_csv_holds_every_category_and_the_mean(run: tuple[Path, BenchmarkResult]) -> None:
    """Per (setting, model): disc, fabric and mean rows with metrics in [0, 1]; mean = mean of categories."""
    _, result = run
    rows = _rows(result)
    keys = {(r["setting"], r["model"], r["category"]) for r in rows}
    expected = {("unified", m, c) for m in ("PromptMAD", "Padim") for c in ("disc", "fabric", "mean")}
    expected |= {("per_class", "Padim", c) for c in ("disc", "fabric", "mean")}
    assert keys == expected
    for row in rows:
        for metric in QUALITY_METRICS:
            assert 0.0 <= float(row[metric]) <= 1.0, (row["model"], row["category"], metric)
        assert float(row["fit_s"]) > 0 and float(row["peak_memory_mib"]) > 100
        assert float(row["images_per_s_b1"]) > 0 and float(row["images_per_s_b8"]) > 0
    by_key = {(r["setting"], r["model"], r["category"]): r for r in rows}
    for setting, model in {("unified", "PromptMAD"), ("unified", "Padim"), ("per_class", "Padim")}:
        for metric in QUALITY_METRICS:
            parts = [float(by_key[setting, model, c][metric]) for c in ("disc", "fabric")]
            assert float(by_key[setting, model, "mean"][metric]) == pytest.approx(sum(parts) / 2, abs=1e-5)
    # one model per category: the per-class training time is the sum of its two jobs
    per_class = [float(by_key["per_class", "Padim", c]["fit_s"]) for c in ("disc", "fabric")]
    assert float(by_key["per_class", "Padim", "mean"]["fit_s"]) == pytest.approx(sum(per_class), rel=1e-4)
    # Padim on the packaged ImageNet weights localises the demo defects far above chance
    assert float(by_key["unified", "Padim", "mean"]["pixel_AUROC"]) > 0.9


def test_markdown_table_and_exact_settings(run: tuple[Path, BenchmarkResult]) -> None:
    """The Markdown tables hold the same numbers; settings.yaml and the CSV state every job's arguments."""
    _, result = run
    markdown = result.report.markdown.read_text(encoding="utf-8")
    rows = _rows(result)
    padim_mean = next(r for r in rows if (r["setting"], r["model"], r["category"]) == ("unified", "Padim", "mean"))
    assert "| category | model | image AUROC | image AP | pixel AUROC | pixel AP | AUPRO | image F1-max |" in markdown
    assert f"{float(padim_mean['pixel_AUROC']):.3f}" in markdown
    assert "## demo, per_class" in markdown
    settings = yaml.safe_load((result.output_dir / "settings.yaml").read_text(encoding="utf-8"))
    assert sorted(settings["jobs"]) == sorted([*FINISHED, BROKEN])
    padim = settings["jobs"]["demo__unified__Padim"]["model_settings"]
    assert padim["init_args"]["backbone"] == "tf_efficientnet_lite0"
    assert padim["init_args"]["layers"] == ["blocks.1", "blocks.2", "blocks.4"]
    assert padim["pre_processor"] == {"backbone": "tf_efficientnet_lite0", "image_size": [64, 64]}
    promptmad = json.loads(next(r for r in rows if r["model"] == "PromptMAD")["settings"])
    assert promptmad["init_args"]["max_epochs"] == 1 and promptmad["init_args"]["image_size"] == [64, 64]


def test_promptmad_fusion_rules_are_recorded(run: tuple[Path, BenchmarkResult]) -> None:
    """PromptMAD's job records each category's calibrated rule; the report lists them; Padim's has none."""
    _, result = run
    jobs = result.output_dir / "jobs"
    rules = json.loads((jobs / "demo__unified__PromptMAD" / "result.json").read_text(encoding="utf-8"))["fusion_rules"]
    assert sorted(rules) == ["disc", "fabric"]
    assert all(isinstance(rule, str) and rule for rule in rules.values())
    assert "fusion_rules" not in json.loads((jobs / "demo__unified__Padim" / "result.json").read_text(encoding="utf-8"))
    markdown = result.report.markdown.read_text(encoding="utf-8")
    assert "## Fusion rules" in markdown
    for category, rule in rules.items():
        assert f"| `demo__unified__PromptMAD` | {category} | `{rule}` |" in markdown


def test_charts_and_side_by_side_maps(run: tuple[Path, BenchmarkResult]) -> None:
    """A PNG per metric, a map figure per setting; every model's maps are of the same test images."""
    _, result = run
    assert sorted(p.stem for p in result.report.charts) == sorted(QUALITY_METRICS)
    assert sorted(p.name for p in result.report.figures) == ["maps_demo_per_class.png", "maps_demo_unified.png"]
    for path in [*result.report.charts, *result.report.figures]:
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200 and pixels.std() > 0.01, path
    samples = {
        job: load_samples(result.output_dir / "jobs" / job / "maps.npz")
        for job in ("demo__unified__PromptMAD", "demo__unified__Padim")
    }
    paths = [[s.image_path for s in group] for group in samples.values()]
    assert paths[0] == paths[1] and len(paths[0]) == 2  # first defective test image of disc and of fabric
    for group in samples.values():
        for sample in group:
            assert sample.mask.any() and sample.anomaly_map.shape == (64, 64)
            assert np.isfinite(sample.anomaly_map).all() and sample.anomaly_map.std() > 0


def test_rerun_skips_finished_jobs_and_still_fails(run: tuple[Path, BenchmarkResult]) -> None:
    """The console command resumes the run folder: finished jobs untouched, the failed one retried, status 1."""
    config, result = run
    results = {job: result.output_dir / "jobs" / job / "result.json" for job in FINISHED}
    before = {job: path.stat().st_mtime_ns for job, path in results.items()}
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "anomalib_promptmad.benchmark", "--config", str(config)]
    completed = subprocess.run(
        [*command, "--output", str(result.output_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 1, completed.stderr[-3000:]
    for job in FINISHED:
        assert f"{job}: skipped" in completed.stderr
    assert f"{BROKEN}: FAILED" in completed.stderr
    assert f"{BROKEN}: " in completed.stderr.split("jobs failed:")[-1]
    assert {job: path.stat().st_mtime_ns for job, path in results.items()} == before
    rows = _rows(result)  # the report was rebuilt from the kept results
    assert len(rows) == 9 and all(not math.isnan(float(r["pixel_AUROC"])) for r in rows)


def test_job_logs_show_every_epoch(run: tuple[Path, BenchmarkResult]) -> None:
    """A job's log.txt says when each training epoch ends (jobs have no progress bar), issue 14."""
    _, result = run
    for outcome in result.outcomes:
        if outcome.ok:
            log = (result.output_dir / "jobs" / outcome.spec.id / "log.txt").read_text(encoding="utf-8")
            assert "epoch 1/1 done in " in log, outcome.spec.id
