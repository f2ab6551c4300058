# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The one timing loop: how often a call completes per second, after untimed warm-up calls.

Used by the benchmark tool's throughput figures and by the measurement scripts in ``scripts/``, so every
images/s figure in the READMEs is timed the same way. Speed is measured by such scripts and printed, never
asserted in tests: a wall-clock bound fails on a busy machine and says nothing useful.

Example:
    >>> calls_per_second(lambda: sum(range(1000)), min_seconds=0.01) > 0
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["calls_per_second"]


def calls_per_second(
    run: Callable[[], object],
    warmup: int = 2,
    min_iterations: int = 3,
    min_seconds: float = 2.0,
    device: torch.device | str | None = None,
) -> float:
    """Completed calls of ``run()`` per second.

    Args:
        run: The work to time (e.g. one forward pass on a fixed batch).
        warmup: Untimed calls first (allocations, caches, lazy initialisation).
        min_iterations: Timed calls at least.
        min_seconds: Time at least this long.
        device: Where ``run`` computes; a CUDA device is synchronised after every call, since CUDA runs
            asynchronously and the clock would otherwise stop before the work is done.

    Returns:
        Calls per second over the timed calls.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")

    def call() -> None:
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        call()
    iterations, elapsed = 0, 0.0
    start = time.perf_counter()
    while iterations < min_iterations or elapsed < min_seconds:
        call()
        iterations += 1
        elapsed = time.perf_counter() - start
    return iterations / elapsed
