# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Shared test set-up: offline, small thread pools, generated data."""

from __future__ import annotations

import os
import socket

# Offline before anything imports huggingface_hub / open_clip: a missing weight must fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "2")

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_ROOT = REPO_ROOT.parent / "shared" / "data" / "mvtec_ad_256"


@pytest.fixture(scope="session")
def real_mvtec_root() -> Path:
    """Root of the real MVTec AD copy (bottle, pill) beside the project; skip where absent."""
    if not (REAL_DATA_ROOT / "bottle" / "train").is_dir():
        pytest.skip(f"real MVTec AD data not found at {REAL_DATA_ROOT}")
    return REAL_DATA_ROOT


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every network connection the test tries to open (each is refused at once).

    A fail-fast offline path asserts this stays empty instead of timing itself: a wall-clock bound fails on
    a busy machine, an attempted download fails here on any machine.
    """
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object, *args: object) -> None:
        if self.family in {socket.AF_INET, socket.AF_INET6}:
            attempts.append(address)
            msg = f"network access in a test: connect to {address!r}"
            raise OSError(msg)
        return original(self, address, *args)

    original = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts
