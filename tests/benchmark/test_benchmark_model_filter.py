# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``--models``: run only some models' jobs, leave the others as they are, report every finished job.

The jobs are run by a stand-in interpreter that writes a made-up result at once (the runner starts each job
as ``PYTHON -m anomalib_promptmad.benchmark.job JOB_DIR``), so these tests check the runner, not models.
"""

from __future__ import annotations

import csv
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from anomalib_promptmad.benchmark.cli import main
from anomalib_promptmad.benchmark.config import BenchmarkConfig, parse_config
from anomalib_promptmad.benchmark.plan import select_models
from anomalib_promptmad.benchmark.runner import run_benchmark

_FAKE_JOB = """
import json
import sys
from pathlib import Path

from anomalib_promptmad.infrastructure.atomic_write import write_json_atomic
from anomalib_promptmad.benchmark.metrics import QUALITY_METRICS
from anomalib_promptmad.benchmark.samples import save_samples

calls, job_dir = Path(sys.argv[1]), Path(sys.argv[-1])
spec = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
with calls.open("a", encoding="utf-8") as file:
    file.write(spec["id"] + "\\n")
save_samples(job_dir / "maps.npz", [])
write_json_atomic(job_dir / "result.json", {
    "job": spec,
    "metrics": {c: {name: 0.75 for name in QUALITY_METRICS} for c in spec["categories"]},
    "counts": {c: {"n_images": 3, "n_anomalous": 2} for c in spec["categories"]},
    "cost": {"fit_s": 1.0, "images_per_s": {"1": 5.0}, "peak_memory_mib": 500.0},
    "samples_file": "maps.npz",
    "environment": {},
})
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that runs the stand-in job; returns it and the file listing the jobs it ran."""
    script = tmp_path / "fake_job.py"
    script.write_text(_FAKE_JOB, encoding="utf-8")
    calls = tmp_path / "calls.txt"
    launcher = tmp_path / "fake_python"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "{calls}" "$@"\n', encoding="utf-8")
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return launcher, calls


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        "image_size": 64,
        "backbone": "tf_efficientnet_lite0",
        "settings": ["unified", "per_class"],
        "datasets": [
            {
                "name": "demo",
                "type": "demo",
                "root": str(tmp_path / "demo"),
                "categories": ["disc", "fabric"],
                "generate": {"image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defect": 1},
            }
        ],
        "models": [
            {"name": "PromptMAD", "class_path": "PromptMAD", "settings": ["unified"]},
            {"name": "Padim", "class_path": "Padim"},
            {"name": "Stfpm, fast", "class_path": "Stfpm"},  # a name holding a comma can still be selected
        ],
        "speed": {"batch_sizes": [1]},
    }


def _ran(calls: Path) -> list[str]:
    lines = calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []
    calls.unlink(missing_ok=True)
    return lines


def _csv_models(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as file:
        return {row["model"] for row in csv.DictReader(file)}


def test_select_models_reads_comma_lists_and_keeps_config_order() -> None:
    """Names in the config's order; a whole name wins over splitting it at its comma; unknown names refused."""
    config = parse_config(_config(Path("/nonexistent")))
    assert select_models(config, ["Padim,PromptMAD"]) == ("PromptMAD", "Padim")
    assert select_models(config, ["Stfpm, fast", "Padim"]) == ("Padim", "Stfpm, fast")
    with pytest.raises(ValueError, match=r"no model named 'Patchcore'; the config's models: PromptMAD, Padim"):
        select_models(config, ["Padim,Patchcore"])
    with pytest.raises(ValueError, match="no model name given"):
        select_models(config, [","])


def test_filtered_runs_leave_other_jobs_alone_and_report_every_finished_job(
    tmp_path: Path, fake_python: tuple[Path, Path]
) -> None:
    """Run 1: Padim only. Run 2: the others; Padim's results are kept, not rerun; the report holds all three."""
    python, calls = fake_python
    config: BenchmarkConfig = parse_config(_config(tmp_path), source="inline")
    output = tmp_path / "run"
    # a job of another model that failed earlier: the filtered run must neither rerun nor delete it
    stale = output / "jobs" / "demo__unified__Stfpm-fast"
    stale.mkdir(parents=True)
    (stale / "error.json").write_text("{}", encoding="utf-8")

    first = run_benchmark(config, output, python=python, models=["Padim"])
    padim = ["demo__unified__Padim", "demo__per_class__Padim__disc", "demo__per_class__Padim__fabric"]
    assert _ran(calls) == padim
    assert first.ok
    statuses = {outcome.spec.id: outcome.status for outcome in first.outcomes}
    assert statuses == {
        "demo__unified__PromptMAD": "not_selected",
        **dict.fromkeys(padim, "done"),
        "demo__unified__Stfpm-fast": "not_selected",
        "demo__per_class__Stfpm-fast__disc": "not_selected",
        "demo__per_class__Stfpm-fast__fabric": "not_selected",
    }
    assert (stale / "error.json").is_file()
    assert not (output / "jobs" / "demo__unified__PromptMAD").exists()
    assert _csv_models(first.report.csv) == {"Padim"}
    markdown = first.report.markdown.read_text(encoding="utf-8")
    assert "## Jobs without a result (4 of 7)" in markdown and "- `demo__unified__PromptMAD`" in markdown
    assert "All 7 jobs finished." not in markdown

    kept = {job: (output / "jobs" / job / "result.json").stat().st_mtime_ns for job in padim}
    second = run_benchmark(config, output, python=python, models=["PromptMAD", "Stfpm, fast"])
    assert _ran(calls) == [
        "demo__unified__PromptMAD",
        "demo__unified__Stfpm-fast",
        "demo__per_class__Stfpm-fast__disc",
        "demo__per_class__Stfpm-fast__fabric",
    ]
    assert {job: (output / "jobs" / job / "result.json").stat().st_mtime_ns for job in padim} == kept
    assert {o.spec.id: o.status for o in second.outcomes if o.spec.model == "Padim"} == dict.fromkeys(padim, "skipped")
    assert _csv_models(second.report.csv) == {"PromptMAD", "Padim", "Stfpm, fast"}
    assert "All 7 jobs finished." in second.report.markdown.read_text(encoding="utf-8")

    # an unfiltered rerun finds everything finished: nothing runs
    assert run_benchmark(config, output, python=python).ok and _ran(calls) == []


def test_cli_models_filter_lists_only_those_jobs_and_refuses_unknown_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--list --models`` prints only the chosen models' jobs; an unknown name is a usage error (status 2)."""
    import yaml

    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)), encoding="utf-8")
    output = tmp_path / "run"
    assert main(["--config", str(path), "--output", str(output), "--list", "--models", "Padim"]) == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == ["demo__unified__Padim", "demo__per_class__Padim__disc", "demo__per_class__Padim__fabric"]
    assert main(["--config", str(path), "--output", str(output), "--models", "Padim,Patchcore"]) == 2
    error = capsys.readouterr().err
    assert "--models: no model named 'Patchcore'; the config's models: PromptMAD, Padim, Stfpm, fast" in error
    assert not output.exists() and not (tmp_path / "demo").exists()
