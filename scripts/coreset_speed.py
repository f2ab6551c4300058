# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Greedy coreset selection: anomalib's ``KCenterGreedy`` against ours, same seed, on real patch features.

Builds Patchcore's embedding (``blocks.2`` + ``blocks.4`` of the offline Lite2 weights, 3 x 3 aggregation,
stride 8) of one category's training images, then selects ``--ratio`` of it with both implementations
(the first ``--steps`` selections only, where a full run would take hours) and prints the time per
selection and whether the indices agree.

Usage:
    python scripts/coreset_speed.py --root ../shared/data/mvtec_ad_256 --category bottle --ratio 0.1 --steps 1500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from anomalib.models.components import KCenterGreedy
from PIL import Image

from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
from anomalib_promptmad.matching import PatchEmbedding, greedy_coreset_indices


def category_embedding(root: Path, category: str, image_size: int, limit: int | None) -> torch.Tensor:
    """``(N, C)`` Patchcore-style patch features of the category's training images."""
    paths = sorted((root / category / "train" / "good").glob("*.png"))[:limit]
    extractor = MultiScaleFeatureExtractor("tf_efficientnet_lite2", layers=(0, 1, 2, 3), weights="auto").eval()
    embedding = PatchEmbedding([2, 3], extractor.out_channels, extractor.strides)
    mean = torch.tensor(extractor.mean).view(1, 3, 1, 1)
    std = torch.tensor(extractor.std).view(1, 3, 1, 1)
    rows = []
    with torch.no_grad():
        for start in range(0, len(paths), 16):
            images = torch.stack([
                torch.from_numpy(np.asarray(Image.open(path).convert("RGB").resize((image_size, image_size))).copy())
                .permute(2, 0, 1)
                .float()
                / 255
                for path in paths[start : start + 16]
            ])
            rows.append(embedding(extractor((images - mean) / std)).permute(0, 2, 3, 1).flatten(0, 2))
    return torch.cat(rows)


class _Stop(Exception):
    pass


def _anomalib_first_steps(features: torch.Tensor, ratio: float, steps: int) -> tuple[list[int], float]:
    sampler = KCenterGreedy(features, ratio)
    chosen: list[int] = []
    original = sampler.get_new_idx

    def counted() -> torch.Tensor:
        index = original()
        chosen.append(int(index))
        if len(chosen) >= steps:
            raise _Stop
        return index

    sampler.get_new_idx = counted  # type: ignore[method-assign]
    start = time.perf_counter()
    try:
        sampler.select_coreset_idxs()
    except _Stop:
        pass
    return chosen, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--category", default="bottle")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--images", type=int, default=None, help="first N training images (default: all)")
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=1500, help="selections timed (a full 10 %% run takes hours)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    features = category_embedding(args.root, args.category, args.image_size, args.images)
    print(f"{args.category}: {features.shape[0]} patches x {features.shape[1]} channels, ratio {args.ratio}")
    np.random.seed(0)
    torch.manual_seed(0)
    reference, reference_time = _anomalib_first_steps(features, args.ratio, args.steps)
    np.random.seed(0)
    torch.manual_seed(0)
    start = time.perf_counter()
    ours = greedy_coreset_indices(features, (args.steps + 1.5) / features.shape[0], progress=False)
    ours_time = time.perf_counter() - start
    same = ours[1 : len(reference) + 1] == reference
    print(f"anomalib KCenterGreedy: {1000 * reference_time / len(reference):.1f} ms per selection")
    print(f"greedy_coreset_indices: {1000 * ours_time / len(ours):.1f} ms per selection (blocks, k-means included)")
    print(f"speed-up {reference_time / len(reference) / (ours_time / len(ours)):.1f}x; same indices: {same}")
    full = int(features.shape[0] * args.ratio)
    print(f"full {args.ratio:g} coreset ({full} selections): anomalib ~{reference_time / len(reference) * full / 60:.0f} min")


if __name__ == "__main__":
    main()
