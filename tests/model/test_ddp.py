# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD trains and tests under Lightning DDP (2 CPU processes, gloo), in a subprocess."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from anomalib_promptmad import PromptMAD

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("ddp_fit_and_test.py")


def test_ddp_on_two_cpu_processes_fits_and_tests(demo_root: Path, model_settings, run_command, tmp_path: Path) -> None:
    """Fit and test on 2 gloo processes: same calibration on both ranks, reduced metrics, loadable checkpoint."""
    settings = {**model_settings, "max_epochs": 1, "prompt_library": str(demo_root / "prompts.yaml")}
    arguments = ["--root", str(demo_root), "--out", str(tmp_path), "--model", json.dumps(settings)]
    result = run_command(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    assert [state["world_size"] for state in ranks] == [2, 2]
    # every rank calibrates on the whole training set: identical prompts, prototypes and map scales
    for name, buffer in ranks[0]["buffers"].items():
        assert buffer.numel() > 0, name
        assert torch.equal(buffer, ranks[1]["buffers"][name]), name
    # metrics are reduced over both ranks' halves of the test set: every rank reports the same values
    metrics = ranks[0]["metrics"]
    assert metrics == ranks[1]["metrics"]
    for name in ("image_AUROC", "pixel_AUROC", "mean/pixel_AUROC", "test_category_accuracy"):
        assert math.isfinite(metrics[name]) and 0 <= metrics[name] <= 1, name
    assert metrics["test_category_accuracy"] >= 0.95
    print("DDP test metrics:", {k: round(v, 3) for k, v in metrics.items() if "/" not in k or "mean" in k})
    loaded = PromptMAD.load_from_checkpoint(ranks[0]["checkpoint"])
    assert loaded.categories == ["circuit", "disc", "fabric"]
    assert torch.equal(loaded.model.map_scale, ranks[0]["buffers"]["map_scale"])
