# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Helpers shared by the deployment tests and their fixtures (``conftest.py``).

The fixtures: one tiny PromptMAD checkpoint and its exports, made once per session.

The deployment path starts from a *checkpoint file*, as a user's does, so this folder trains its own
two-epoch model (about 20 s) instead of reusing the in-memory model of ``tests/model``. The ONNX trace is
the slow part (about a minute on 2 cores): the stock ``anomalib export`` command exports OpenVINO in a
subprocess while this process exports ONNX and torch with ``Engine.export``, so the two traces overlap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 64
TINY_MODEL: dict[str, Any] = {**tiny_model.TINY_MODEL, "image_size": IMAGE_SIZE, "max_epochs": 2}


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment of a child process: offline, one thread, this checkout importable."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


def run(args: Sequence[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, output captured."""
    return subprocess.run(
        list(args), cwd=cwd, env=subprocess_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def anomalib_command() -> list[str]:
    """The stock ``anomalib`` console script beside this interpreter."""
    script = Path(sys.executable).with_name("anomalib")
    assert script.is_file(), f"the anomalib console script is missing beside {sys.executable}"
    return [str(script)]


@dataclass
class Deployment:
    """The session's checkpoint, its exports and reference outputs.

    Attributes:
        root: Session folder.
        data_root: Generated demo dataset.
        checkpoint: Lightning checkpoint written by ``Engine.fit``.
        exports: ``{"torch": .pt, "onnx": .onnx, "openvino": .xml}`` exported from the checkpoint.
        cli_export: The completed ``anomalib export --export_type openvino`` process.
        images: Folder of eight demo test images (every category, good and defective).
    """

    root: Path
    data_root: Path
    checkpoint: Path
    exports: dict[str, Path]
    cli_export: subprocess.CompletedProcess[str]
    images: Path
