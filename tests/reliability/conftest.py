# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fixtures of the reliability tests: tiny data, tiny model, and the training runs several tests compare.

Training is the expensive part, so each run (uninterrupted reference, its repeat, crashed + resumed, DDP)
happens once per session in :func:`runs` and the tests only compare their results. Runs are separate
processes: a crash must kill a process without clean-up, and DDP's launcher re-runs its script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tiny_model
import torch
from run_support import EPOCHS, read_result

IMAGE_SIZE = 32
BATCH_SIZE = 4
SCRIPT = Path(__file__).with_name("train_run.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]

TINY_MODEL: dict[str, Any] = {**tiny_model.TINY_MODEL, "image_size": IMAGE_SIZE}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One torch thread: the machines running these tests share their cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two demo categories at 32 px: 8 training, 2 good and 2 x 2 defective test images each. Read-only."""
    from anomalib_promptmad import generate_demo_dataset

    return generate_demo_dataset(
        tmp_path_factory.mktemp("reliability") / "demo",
        categories=("disc", "fabric"),
        image_size=IMAGE_SIZE,
        n_train=8,
        n_test_good=2,
        n_test_defect=2,
    )


@pytest.fixture(scope="session")
def model_settings(demo_root: Path) -> dict[str, Any]:
    """Init arguments of the tiny PromptMAD of the session's runs."""
    return {**TINY_MODEL, "max_epochs": EPOCHS, "prompt_library": str(demo_root / "prompts.yaml")}


def train_in_subprocess(
    root: Path, out: Path, model: dict[str, Any], *extra: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run ``train_run.py`` (offline, one thread, this project importable) and return the finished process."""
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(SCRIPT), "--root", str(root), "--out", str(out), "--model", json.dumps(model)]
    return subprocess.run(
        [*command, "--batch-size", str(BATCH_SIZE), *extra],
        cwd=out,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def train() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``train(root, out, model, *extra_args)``: one training run in a fresh process."""
    return train_in_subprocess


@pytest.fixture(scope="session")
def reference_run(demo_root: Path, model_settings: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted single-process run (seed 0) that the resume, repeat and DDP runs are compared with."""
    out = tmp_path_factory.mktemp("reference")
    return read_result(out, train_in_subprocess(demo_root, out, model_settings))
