# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""How fast the frozen backbone runs a batch on CPU: memory layout and micro-batch size.

Times ``MultiScaleFeatureExtractor`` on one batch of random images (speed does not depend on the weights)
in four ways, interleaved round by round so that a busy machine slows all of them alike, and prints the
median and best time of each:

- ``contiguous, one pass``: NCHW input, the whole batch at once (what the extractor did before);
- ``channels-last, one pass``: ``micro_batch_pixels=None``;
- ``channels-last, slices of N``: the batch in slices of ``N`` images (N = 1, 2, 4);
- the extractor's default (:data:`~anomalib_promptmad.backbone.CPU_MICRO_BATCH_PIXELS`).

Also checks that every variant returns the same features as the first (max abs difference).

Usage:
    python scripts/backbone_speed.py [--batch 8] [--image-size 256] [--rounds 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch

from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
from anomalib_promptmad.infrastructure.timing import calls_per_second


def main() -> None:
    """Time the variants and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tf_efficientnet_lite2")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--weights", default="none", help="backbone weights (speed does not depend on them)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    extractor = MultiScaleFeatureExtractor(args.backbone, weights=args.weights).eval()
    images = torch.rand(args.batch, 3, args.image_size, args.image_size)
    pixels = args.image_size**2

    def with_budget(budget: int | None) -> Callable[[], list[torch.Tensor]]:
        def run() -> list[torch.Tensor]:
            extractor.micro_batch_pixels = budget
            return extractor(images)

        return run

    def contiguous() -> list[torch.Tensor]:
        return list(extractor.features(images))

    default = extractor.micro_batch_pixels
    variants: dict[str, Callable[[], list[torch.Tensor]]] = {
        "contiguous, one pass": contiguous,
        "channels-last, one pass": with_budget(None),
        **{f"channels-last, slices of {n}": with_budget(n * pixels) for n in (1, 2, 4) if n < args.batch},
        f"default ({default} pixels per slice)": with_budget(default),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        reference = contiguous()
        difference = {
            name: max((a - b).abs().max().item() for a, b in zip(reference, run(), strict=True))
            for name, run in variants.items()
        }
        for _ in range(args.rounds):
            for name, run in variants.items():
                # one timed call per variant and round (warmed up above): the rounds interleave the variants
                times[name].append(1 / calls_per_second(run, warmup=0, min_iterations=1, min_seconds=0))
    base = statistics.median(times["contiguous, one pass"])
    print(f"{args.backbone}, batch {args.batch}, {args.image_size} px, {args.threads} threads, {args.rounds} rounds\n")
    print("| variant | median ms | best ms | images/s (median) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median * 1000:.0f} | {min(values) * 1000:.0f} | {args.batch / median:.1f} | "
            f"{base / median:.2f}x | {difference[name]:.1e} |"
        )


if __name__ == "__main__":
    main()
