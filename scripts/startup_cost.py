# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Print what the registration hook costs at interpreter start-up (``python -X importtime``).

Usage:
    python scripts/startup_cost.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from anomalib_promptmad.infrastructure.timing import calls_per_second


def _hook_import_us() -> int:
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True)
    rows = [line for line in result.stderr.splitlines() if "anomalib_promptmad" in line]
    if not rows:
        msg = "the registration hook did not run: is anomalib-promptmad installed (pip install -e .)?"
        raise SystemExit(msg)
    return max(int(line.split("|")[1]) for line in rows)


def _startup_ms() -> float:
    """Mean start-up time of 7 interpreter launches, after one untimed launch."""
    launch = lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)  # noqa: E731
    return 1000 / calls_per_second(launch, warmup=1, min_iterations=7, min_seconds=0)


def main() -> None:
    """Measure and print."""
    hook = statistics.median(_hook_import_us() for _ in range(7))
    with_site = _startup_ms()
    print(f"registration hook import (cumulative, median of 7): {hook / 1000:.2f} ms")
    print(f"interpreter start-up with site-packages (mean of 7): {with_site:.1f} ms")


if __name__ == "__main__":
    main()
