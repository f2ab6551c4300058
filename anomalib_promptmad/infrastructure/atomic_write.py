# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Atomic file writes: a reader (or a rerun after a crash) sees the old file or the whole new one.

Benchmark results, prediction tables and checkpoints are written through these helpers: the content goes
to a temporary file in the same folder, which is then renamed over the target with ``os.replace`` (atomic
on POSIX and Windows within one file system). An interrupted run therefore never leaves a half-written
file that a rerun or a reader would take for a finished one.

``tempfile.mkstemp`` creates its file with mode 0600; the written file is given the mode ``open()`` would
have given it (0666 minus the umask: 0644 under the usual 022, as anomalib's own files), so checkpoints,
tables and benchmark results stay readable by the group and others where the user's umask says so.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["default_file_mode", "default_folder_mode", "write_atomic", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """Mode of a new file made by ``open()``: ``0o666`` minus the umask (``0o644`` under umask 022)."""
    return 0o666 & ~_umask()


def default_folder_mode() -> int:
    """Mode of a new folder made by ``mkdir``: ``0o777`` minus the umask (``0o755`` under umask 022)."""
    return 0o777 & ~_umask()


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path`` atomically: ``write`` fills a temporary binary file, which then replaces ``path``.

    Args:
        path: Target file; its folder is created if needed.
        write: Called with the open temporary file.

    Returns:
        The target path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; mkstemp's 0600 would make every result private to the user
            os.fchmod(descriptor, default_file_mode())
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 text to ``path`` atomically."""
    return write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN is refused: use ``None``)."""
    return write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
