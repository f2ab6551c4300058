# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The stock ``anomalib train`` command trains and tests PromptMAD on multi-class data, in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def test_anomalib_train_with_the_short_model_name(
    demo_root: Path, model_settings, run_command, anomalib_cli, tmp_path: Path
) -> None:
    """`anomalib train --model PromptMAD --data MultiClassMVTecAD` trains, tests and checkpoints."""
    model_arguments = [
        argument
        for name, value in {**model_settings, "max_epochs": 1, "prompt_library": demo_root / "prompts.yaml"}.items()
        for argument in (f"--model.{name}", str(value))
    ]
    result = run_command(
        [
            *anomalib_cli,
            "train",
            "--model",
            "PromptMAD",
            *model_arguments,
            "--data",
            "MultiClassMVTecAD",
            "--data.root",
            str(demo_root),
            "--data.categories",
            "[disc, fabric]",
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
            "--default_root_dir",
            str(tmp_path / "results"),
        ],
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for metric in ("pixel_AUROC", "image_AUROC", "test_category_accuracy", "mean/pixel_AUROC"):
        assert metric in output, metric
    checkpoints = {path.name: path for path in (tmp_path / "results").rglob("*.ckpt")}
    assert set(checkpoints) == {"model.ckpt", "last.ckpt"}  # last.ckpt: a killed run can resume
    hparams = torch.load(checkpoints["model.ckpt"], map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["categories"] == ["disc", "fabric"]
    assert hparams["text_encoder"] == "minilm"
    assert hparams["image_size"] == 64
