# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category fusion rules, and their choice on the validation split.

The reconstruction distance ``D`` and the pixel-head probability ``P`` fail in different ways: on a
textured part the segmentor can fire on normal texture that looks like the synthetic anomalies it was
trained on, while the distance map is diffuse at borders and fine detail. Which mix localises best depends
on the category, so each category gets the rule with the highest pixel AP on the validation split: held-out
normal training images plus synthetic defects, never test images.

Candidates: the weighted sums ``(1 - w) * D + w * P`` for ``w`` in 0, 0.1, ..., 1 (``w = 1``: segmentor
only) and the product ``D * P`` (the segmentor gates the distance).

Example:
    >>> import torch
    >>> distance, probability = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    >>> mask = probability > 0.9
    >>> rule, scores = choose_fusion_rule(distance, probability, mask)
    >>> rule.weight, rule.product
    (1.0, False)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anomalib_promptmad.anomaly_map import fuse_maps

__all__ = ["CANDIDATE_RULES", "FusionRule", "average_precision", "choose_fusion_rule"]


@dataclass(frozen=True)
class FusionRule:
    """How one category's scaled distance ``D`` and probability ``P`` make its anomaly map.

    Args:
        weight: Weight of ``P`` in the sum ``(1 - weight) * D + weight * P`` (unused for the product).
        product: Use ``D * P`` instead of the sum.
    """

    weight: float = 0.5
    product: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            msg = f"the fusion weight must be in [0, 1], got {self.weight}"
            raise ValueError(msg)

    def __str__(self) -> str:
        if self.product:
            return "D * P"
        if self.weight in {0.0, 1.0}:
            return "P only" if self.weight else "D only"
        return f"{1 - self.weight:g} D + {self.weight:g} P"

    def apply(self, distance: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
        """Fuse ``(B, 1, H, W)`` maps of this category (the network uses the same :func:`fuse_maps`)."""
        count = distance.shape[0]
        weight = torch.full((count,), self.weight, dtype=distance.dtype, device=distance.device)
        product = torch.full((count,), float(self.product), dtype=distance.dtype, device=distance.device)
        return fuse_maps(distance, probability, weight, product)


CANDIDATE_RULES: tuple[FusionRule, ...] = (
    *(FusionRule(weight=step / 10) for step in range(11)),
    FusionRule(product=True),
)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact average precision (scikit-learn's step-wise definition; tied scores form one threshold).

    Args:
        scores: Any shape; higher means more anomalous.
        labels: Same shape, bool or {0, 1}.

    Returns:
        AP in [0, 1]; ``nan`` when there is no positive.
    """
    scores = scores.flatten().double()
    labels = labels.flatten().double()
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    scores, labels = scores[order], labels[order]
    true_positives = labels.cumsum(0)
    # the last index of each run of equal scores is where that threshold's precision and recall are read
    last = torch.ones_like(scores, dtype=torch.bool)
    last[:-1] = scores[1:] != scores[:-1]
    index = torch.nonzero(last).flatten()
    hits = true_positives[index]
    precision = hits / (index + 1).double()
    recall_step = torch.diff(hits, prepend=hits.new_zeros(1)) / positives
    return float((recall_step * precision).sum())


def choose_fusion_rule(
    distance: torch.Tensor,
    probability: torch.Tensor,
    mask: torch.Tensor,
    candidates: tuple[FusionRule, ...] = CANDIDATE_RULES,
) -> tuple[FusionRule, dict[FusionRule, float]]:
    """Pick the rule with the highest pixel AP; ties go to the earlier candidate.

    Args:
        distance: ``(N, 1, H, W)`` scaled distance maps of one category's validation images.
        probability: ``(N, 1, H, W)`` their pixel-head probabilities.
        mask: ``(N, 1, H, W)`` their ground truth (anomalous pixels true).
        candidates: Rules to try.

    Returns:
        ``(best rule, pixel AP of every candidate)``.

    Raises:
        ValueError: The masks have no anomalous pixel, so AP is undefined.
    """
    if not bool(mask.any()):
        msg = "the validation masks have no anomalous pixel: pixel AP cannot rank fusion rules"
        raise ValueError(msg)
    scores = {rule: average_precision(rule.apply(distance, probability), mask) for rule in candidates}
    best = max(candidates, key=lambda rule: scores[rule])  # max keeps the first of equal values
    return best, scores
