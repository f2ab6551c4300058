# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The atomic checkpoint writer: a failed or interrupted write leaves the previous checkpoint intact."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from anomalib_promptmad.reliability import AtomicCheckpointIO, check_precision


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


def test_unknown_precision_is_refused() -> None:
    """Anything outside the supported list is refused with the list."""
    check_precision("bf16-mixed")
    with pytest.raises(ValueError, match="Use one of"):
        check_precision("transformer-engine")
