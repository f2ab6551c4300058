# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The atomic checkpoint writer: a failed or interrupted write leaves the previous checkpoint intact."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from anomalib_promptmad.infrastructure.checkpoint_io import AtomicCheckpointIO
from anomalib_promptmad.infrastructure.precision import check_precision


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    """A write that fails half-way (an object that cannot be pickled) changes nothing on disk."""
    target = tmp_path / "weights" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"epoch": 0, "state_dict": {"w": torch.ones(1000)}}, target)
    before = target.read_bytes()
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pickle raises
        io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(1000)}, "bad": threading.Lock()}, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no partial file left
    loaded = io.load_checkpoint(target)
    assert loaded["epoch"] == 0
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(1000))


def _copy_killed_half_way(source: Any, target: Any, *args: object, **kwargs: object) -> None:  # noqa: ANN401
    """A copy between file systems that dies half-way (shutil's fast and plain copy loops alike)."""
    data = source.read()
    target.write(data[: len(data) // 2])
    target.flush()
    msg = "simulated crash during the copy"
    raise OSError(msg)


@pytest.mark.parametrize(
    "io_class",
    [
        AtomicCheckpointIO,
        pytest.param(
            TorchCheckpointIO,
            marks=pytest.mark.xfail(
                strict=True,
                reason="Lightning's writer moves its file from $TMPDIR: across file systems the move is a copy "
                "that first truncates the previous checkpoint (why AtomicCheckpointIO exists)",
            ),
        ),
    ],
)
def test_a_write_across_file_systems_killed_half_way_keeps_a_loadable_checkpoint(
    io_class: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $TMPDIR on another file system (tmpfs, a container volume) a crash mid-write loses no checkpoint."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system for $TMPDIR (/dev/shm)")
    other_file_system = Path(tempfile.mkdtemp(dir=shm))
    try:
        monkeypatch.setattr(tempfile, "tempdir", str(other_file_system))
        target = tmp_path / "weights" / "last.ckpt"
        io = io_class()
        io.save_checkpoint({"epoch": 0, "state_dict": {"w": torch.ones(100_000)}}, target)
        monkeypatch.setattr(shutil, "_fastcopy_sendfile", _copy_killed_half_way)
        monkeypatch.setattr(shutil, "copyfileobj", _copy_killed_half_way)
        with contextlib.suppress(OSError):
            io.save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(100_000)}}, target)
        loaded = torch.load(target, map_location="cpu", weights_only=True)  # the old checkpoint or the new one
        assert loaded["epoch"] in {0, 1}
        assert torch.equal(loaded["state_dict"]["w"], torch.full((100_000,), float(loaded["epoch"] == 0)))
        assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary file left
    finally:
        shutil.rmtree(other_file_system, ignore_errors=True)


def test_unknown_precision_is_refused() -> None:
    """Anything outside the supported list is refused with the list."""
    check_precision("bf16-mixed")
    with pytest.raises(ValueError, match="Use one of"):
        check_precision("transformer-engine")
