# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The stock ``anomalib`` command trains, tests and reloads PromptMAD on multi-class data, in subprocesses.

One ``anomalib train`` run (module fixture) serves every test here: the training length is given the way an
anomalib user gives it, ``--trainer.max_epochs``, and the checkpoint it writes is then tested again with
``anomalib test --ckpt_path`` and no model options, as the README says.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

CATEGORIES = "[disc, fabric]"

# Rich's table rows: "│ mean/pixel_AUROC │ 0.5061728358268738 │"
_METRIC_ROW = re.compile(r"^[│┃]\s*([\w/]+)\s*[│┃]\s*(-?[0-9.eE+-]+)\s*[│┃]\s*$")

# wide enough that Rich never wraps or shortens a metric's name or value
_WIDE = {"COLUMNS": "200"}


@dataclass
class CLIRun:
    """One ``anomalib train`` subprocess: its output and the checkpoints it wrote."""

    result: subprocess.CompletedProcess[str]
    checkpoints: dict[str, Path]

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.result.stdout + self.result.stderr


def _printed_metrics(output: str) -> dict[str, str]:
    """Every ``name: value`` row of the metric tables the command printed (values as printed)."""
    rows = (_METRIC_ROW.match(line.strip()) for line in output.splitlines())
    return {row.group(1): row.group(2) for row in rows if row}


def _data_arguments(demo_root: Path) -> list[str]:
    return [
        "--data",
        "MultiClassMVTecAD",
        "--data.root",
        str(demo_root),
        "--data.categories",
        CATEGORIES,
        "--data.train_batch_size",
        "8",
        "--data.eval_batch_size",
        "8",
        "--data.num_workers",
        "0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
    ]


@pytest.fixture(scope="module")
def cli_run(
    demo_root: Path, model_settings, run_command, anomalib_cli, tmp_path_factory: pytest.TempPathFactory
) -> CLIRun:
    """``anomalib train --model PromptMAD ... --trainer.max_epochs 1`` (the model's own length left unset)."""
    work = tmp_path_factory.mktemp("stock_cli")
    settings = {name: value for name, value in model_settings.items() if name != "max_epochs"}
    model_arguments = [
        argument
        for name, value in {**settings, "prompt_library": demo_root / "prompts.yaml"}.items()
        for argument in (f"--model.{name}", str(value))
    ]
    result = run_command(
        [
            *anomalib_cli,
            "train",
            "--model",
            "PromptMAD",
            *model_arguments,
            *_data_arguments(demo_root),
            "--trainer.max_epochs",
            "1",
            "--default_root_dir",
            str(work / "results"),
        ],
        cwd=work,
        env=_WIDE,
    )
    checkpoints = {path.name: path for path in (work / "results").rglob("*.ckpt")}
    return CLIRun(result=result, checkpoints=checkpoints)


def test_anomalib_train_with_the_short_model_name(cli_run: CLIRun) -> None:
    """`anomalib train --model PromptMAD --data MultiClassMVTecAD` trains, tests and checkpoints."""
    assert cli_run.result.returncode == 0, cli_run.output[-4000:]
    for metric in ("pixel_AUROC", "image_AUROC", "test_category_accuracy", "mean/pixel_AUROC"):
        assert metric in cli_run.output, metric
    assert set(cli_run.checkpoints) == {"model.ckpt", "last.ckpt"}  # last.ckpt: a killed run can resume
    # ... and it is a link to model.ckpt, not a second copy of the same 100+ MB
    assert cli_run.checkpoints["last.ckpt"].is_symlink()
    assert cli_run.checkpoints["last.ckpt"].resolve() == cli_run.checkpoints["model.ckpt"].resolve()
    hparams = torch.load(cli_run.checkpoints["model.ckpt"], map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["categories"] == ["disc", "fabric"]
    assert hparams["text_encoder"] == "minilm"
    assert hparams["image_size"] == 64


def test_trainer_max_epochs_is_honoured(cli_run: CLIRun) -> None:
    """`--trainer.max_epochs 1` trains one epoch: the model no longer replaces it with its own 1000."""
    assert cli_run.result.returncode == 0, cli_run.output[-4000:]
    assert "Overriding max_epochs" not in cli_run.output
    checkpoint = torch.load(cli_run.checkpoints["model.ckpt"], map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 0  # the first (and only) epoch
    assert "`max_epochs=1` reached" in cli_run.output  # Lightning's message when fit stops at the limit


def test_anomalib_test_from_the_checkpoint_reproduces_the_training_run_metrics(
    cli_run: CLIRun, demo_root: Path, run_command, anomalib_cli, tmp_path: Path
) -> None:
    """`anomalib test --model PromptMAD --ckpt_path model.ckpt`, no model options: the same metrics, exactly.

    The command builds PromptMAD with its default arguments (256 px) before reading the checkpoint (64 px);
    the images must still reach the network as they did in training.
    """
    assert cli_run.result.returncode == 0, cli_run.output[-4000:]
    expected = _printed_metrics(cli_run.output)
    assert "mean/pixel_AUROC" in expected, cli_run.output[-4000:]
    result = run_command(
        [
            *anomalib_cli,
            "test",
            "--model",
            "PromptMAD",
            *_data_arguments(demo_root),
            "--ckpt_path",
            str(cli_run.checkpoints["model.ckpt"]),
            "--default_root_dir",
            str(tmp_path / "results"),
        ],
        cwd=tmp_path,
        env=_WIDE,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert _printed_metrics(output) == expected
