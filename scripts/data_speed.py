# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Print how fast the data side runs: the demo dataset's generation and the synthesizer per training batch.

Speed is printed here, never asserted in tests (a wall-clock bound fails on a busy machine). Figures on the
development machine (2 cores, idle): see the model README.

Usage:
    python scripts/data_speed.py [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from anomalib_promptmad.data.demo import generate_demo_dataset
from anomalib_promptmad.data.synthetic import AnomalySynthesizer
from anomalib_promptmad.infrastructure.timing import calls_per_second


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (1: stable on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as folder:
        runs = iter(range(1000))
        generate = lambda: generate_demo_dataset(Path(folder) / f"demo{next(runs)}")  # noqa: E731
        demo_s = 1 / calls_per_second(generate, warmup=0, min_iterations=3, min_seconds=0)
    print(f"demo dataset, default arguments: {demo_s:.2f} s per dataset (mean of 3)")

    images = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    synthesizer = AnomalySynthesizer()
    seeds = iter(range(10_000))
    synthesize = lambda: synthesizer(images, torch.Generator().manual_seed(next(seeds)))  # noqa: E731
    batch_s = 1 / calls_per_second(synthesize, warmup=1, min_iterations=7, min_seconds=2.0)
    print(f"synthesizer, batch of 8 at 256 px, {args.threads} thread(s): {batch_s * 1000:.0f} ms per batch")


if __name__ == "__main__":
    main()
