# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Deterministic per-category splits: every category keeps its share of the validation and test sets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName

__all__ = ["split_per_category"]


def split_per_category(
    dataset: AnomalibDataset,
    ratio: float,
    seed: int,
    label_aware: bool = False,
    categories: Sequence[str] | None = None,
) -> tuple[AnomalibDataset, AnomalibDataset]:
    """Move a random ``ratio`` of each category's samples (of normals only, unless ``label_aware``) out.

    Each group (category, or category and label) with at least two samples gives
    ``max(1, round(ratio * n))`` samples, never all of them.

    Args:
        dataset (AnomalibDataset): Dataset whose ``samples`` have a ``category`` column.
        ratio (float): Share of each group to take, in (0, 1).
        seed (int): Seed of the draw.
        label_aware (bool): Split every label of a category (else only its normal samples are drawn
            from). Defaults to ``False``.
        categories (Sequence[str] | None): Only draw from these categories. Defaults to all.

    Returns:
        tuple[AnomalibDataset, AnomalibDataset]: The remaining samples and the samples taken.
    """
    samples = dataset.samples
    rng = np.random.default_rng(seed)
    eligible = samples.category.isin(categories) if categories is not None else pd.Series(True, index=samples.index)
    if not label_aware:
        eligible &= samples.label_index == LabelName.NORMAL
    keys = ["category", "label_index"] if label_aware else ["category"]
    taken: list[int] = []
    for _, group in sorted(samples[eligible].groupby(keys, sort=True), key=lambda item: str(item[0])):
        positions = np.sort(samples.index.get_indexer(group.index))
        if len(positions) < 2:
            continue
        count = min(len(positions) - 1, max(1, round(ratio * len(positions))))
        taken.extend(rng.choice(positions, size=count, replace=False).tolist())
    kept = sorted(set(range(len(samples))) - set(taken))
    return dataset.subsample(kept), dataset.subsample(sorted(taken))
