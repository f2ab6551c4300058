# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Constants and helpers the reliability tests import (a module of its own: ``conftest`` names collide)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["EPOCHS", "read_result"]

EPOCHS = 3


def read_result(out: Path, process: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``result.json`` of a finished run; fails the test with the run's output if it failed."""
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-5000:]
    return json.loads((out / "result.json").read_text())
