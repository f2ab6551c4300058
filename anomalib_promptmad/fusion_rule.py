# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category fusion rules, and their choice on the validation split.

Everything about fusion lives here except the arithmetic the network applies
(:func:`anomalib_promptmad.anomaly_map.fuse_maps`, which :meth:`FusionRule.apply` calls too).

The reconstruction distance ``D``, the pixel-head probability ``P`` and, with prompt matching, the
prompt-matching distance ``M`` fail in different ways: on a textured part the segmentor can fire on normal
texture that looks like the synthetic anomalies it was trained on, the distance map is diffuse at borders
and fine detail, and ``M`` needs no training at all but cannot tell a rare normal patch from a defect. Which
mix localises best depends on the category, so each category gets the rule that ranks pixels best on the
validation split (held-out normal training images plus synthetic defects, never test images), scored by the
mean of pixel AP and pixel AUROC, so that a rule that finds the bulk of a defect but ranks the rest of it
below normal texture (high AP, poor AUROC) does not win.

Real defects are none of the synthetic families, so a rule must work for all of them: with the family of each
validation defect known, every family is scored on its own defects against all normal validation images and a
rule counts by its worst family (ties: the mean over families). Pooling the pixels instead lets the family
with the largest defects decide; on the four real categories here that choice gave a mean test pixel AP of
0.52, against 0.61 by the worst family (same maps, see the model README).

Candidates: the weighted sums ``w_D * D + w_P * P + w_M * M`` with weights on a 0.1 grid of the simplex
(``w_M = 0`` without prompt matching, which leaves ``(1 - w) * D + w * P`` for ``w`` in 0, 0.1, ..., 1),
the product ``D * P`` (the segmentor gates the distance), and the weighted geometric means
``D^w_D * P^w_P * M^w_M`` on the same grid (at least two maps weighted; one map alone is the sum's vertex).
A geometric mean needs every weighted map to be high, and it ignores each map's scale: a pixel the segmentor
is sure of but that matches a normal patch closely stays low, where a sum lets either map alone raise it. On the
validation split of two trainings (seeds 42 and 43) it ranked best on bottle, pill and tire in both; where the
sums had picked ``D * P`` it replaced a rule that lost 23 points of test pixel AP on pill (model README).

Example:
    >>> import torch
    >>> distance, probability = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    >>> mask = probability > 0.9
    >>> rule, scores = choose_fusion_rule(distance, probability, mask)
    >>> rule.segmentation_weight, rule.matching_weight, rule.product
    (1.0, 0.0, False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from tqdm import tqdm

from anomalib_promptmad.anomaly_map import fuse_maps

if TYPE_CHECKING:
    from anomalib_promptmad.torch_model import PromptMADModel

__all__ = [
    "CANDIDATE_RULES",
    "FusionChoice",
    "FusionRule",
    "ValidationMaps",
    "batch_masks",
    "candidate_rules",
    "choose_category_rules",
    "choose_fusion_rule",
    "family_ranking_quality",
    "ranking_quality",
    "validation_maps",
]

# Side of the grid on which validation maps are compared: AP barely moves with resolution, memory does.
SELECTION_SIZE = 128


@dataclass(frozen=True)
class FusionRule:
    """How one category's scaled distance ``D``, probability ``P`` and matching map ``M`` make its anomaly map.

    Args:
        segmentation_weight: Weight ``w`` of the segmentor's ``P`` in the sum ``(1 - w - w_M) * D + w * P + w_M * M``
            (PromptMAD's ``segmentation_weight`` argument sets it for ``fusion="sum"``).
        product: Use ``D * P`` instead of the sum (the weights are then unused).
        matching_weight: Weight ``w_M`` of the prompt-matching map ``M`` in the sum.
        geometric: Use the weighted geometric mean ``D^(1 - w - w_M) * P^w * M^w_M`` instead of the sum.
    """

    segmentation_weight: float = 0.5
    product: bool = False
    matching_weight: float = 0.0
    geometric: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.segmentation_weight <= 1.0:
            msg = f"segmentation_weight must be in [0, 1], got {self.segmentation_weight}"
            raise ValueError(msg)
        if not 0.0 <= self.matching_weight <= 1.0 - self.segmentation_weight + 1e-9:
            msg = (
                f"matching_weight must be in [0, 1 - segmentation_weight], got {self.matching_weight} with "
                f"segmentation_weight {self.segmentation_weight}"
            )
            raise ValueError(msg)
        if self.product and self.geometric:
            msg = "a fusion rule is the product D * P or a geometric mean, not both"
            raise ValueError(msg)

    @property
    def distance_weight(self) -> float:
        """Weight of ``D`` in the sum or the geometric mean."""
        return round(1.0 - self.segmentation_weight - self.matching_weight, 6)

    @property
    def weighted_maps(self) -> tuple[tuple[str, float], ...]:
        """``(name, weight)`` of each map with a non-zero weight, in the order ``D``, ``P``, ``M``."""
        weights = (("D", self.distance_weight), ("P", self.segmentation_weight), ("M", self.matching_weight))
        return tuple((name, value) for name, value in weights if value)

    def __str__(self) -> str:
        if self.product:
            return "D * P"
        if self.geometric:
            return " * ".join(f"{name}^{value:g}" for name, value in self.weighted_maps)
        terms = [f"{value:g} {name}" for name, value in self.weighted_maps]
        if len(terms) == 1:
            return f"{terms[0].split()[1]} only"
        return " + ".join(terms)

    def apply(
        self,
        distance: torch.Tensor,
        probability: torch.Tensor,
        matching: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Fuse ``(B, 1, H, W)`` maps of this category (the network uses the same :func:`fuse_maps`)."""
        count = distance.shape[0]

        def full(value: float) -> torch.Tensor:
            return torch.full((count,), value, dtype=distance.dtype, device=distance.device)

        return fuse_maps(
            distance,
            probability,
            full(self.segmentation_weight),
            full(float(self.product)),
            matching,
            full(self.matching_weight) if matching is not None else None,
            full(float(self.geometric)),
        )


class FusionChoice(NamedTuple):
    """The rule chosen for one category, and the score of every candidate (higher is better)."""

    rule: FusionRule
    scores: dict[FusionRule, float]


class ValidationMaps(NamedTuple):
    """One category's validation images as the fusion choice sees them, each map ``(N, 1, h, w)``.

    Attributes:
        distance: Scaled reconstruction distance ``D``.
        probability: Pixel-head probability ``P``.
        matching: Scaled prompt-matching distance ``M``; ``None`` without prompt matching.
        mask: Ground truth (anomalous pixels true).
        families: The defect family of each image (``"normal"`` for normal images).
    """

    distance: torch.Tensor
    probability: torch.Tensor
    matching: torch.Tensor | None
    mask: torch.Tensor
    families: list[str]


def candidate_rules(with_matching: bool = False) -> tuple[FusionRule, ...]:
    """The rules the validation split chooses from.

    In this order (ties go to the earlier): sums on a 0.1 simplex grid, the product ``D * P``, then the geometric
    means on the same grid that weight at least two maps.
    """
    grid = [
        (p_steps / 10, m_steps / 10) for m_steps in range(11 if with_matching else 1) for p_steps in range(11 - m_steps)
    ]
    sums = [FusionRule(segmentation_weight=p, matching_weight=m) for p, m in grid]
    geometric = [FusionRule(segmentation_weight=p, matching_weight=m, geometric=True) for p, m in grid]
    return (*sums, FusionRule(product=True), *(rule for rule in geometric if len(rule.weighted_maps) > 1))


CANDIDATE_RULES: tuple[FusionRule, ...] = candidate_rules()


def ranking_quality(scores: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of pixel AP and pixel AUROC (torchmetrics, exact): how well ``scores`` rank the ``mask`` pixels."""
    scores = scores.flatten().double()
    labels = mask.flatten().long()
    return 0.5 * float(binary_average_precision(scores, labels) + binary_auroc(scores, labels))


def family_ranking_quality(scores: torch.Tensor, mask: torch.Tensor, families: Sequence[str]) -> list[float]:
    """:func:`ranking_quality` of each defect family, on its defects against every normal image.

    Args:
        scores: ``(N, 1, H, W)`` anomaly maps.
        mask: ``(N, 1, H, W)`` ground truth; images without an anomalous pixel are the normal ones.
        families: The defect family of each image (ignored for normal images).

    Returns:
        One quality per family that has a defect, in sorted family order.
    """
    if len(families) != mask.shape[0]:
        msg = f"one family per image is needed: {len(families)} families for {mask.shape[0]} images"
        raise ValueError(msg)
    anomalous = mask.flatten(1).any(1).tolist()
    names = sorted({family for family, bad in zip(families, anomalous, strict=True) if bad})
    qualities = []
    for name in names:
        keep = torch.tensor([not bad or family == name for family, bad in zip(families, anomalous, strict=True)])
        qualities.append(ranking_quality(scores[keep], mask[keep]))
    return qualities


def choose_fusion_rule(
    distance: torch.Tensor,
    probability: torch.Tensor,
    mask: torch.Tensor,
    candidates: tuple[FusionRule, ...] = CANDIDATE_RULES,
    matching: torch.Tensor | None = None,
    families: Sequence[str] | None = None,
) -> FusionChoice:
    """Pick the rule that ranks the anomalous pixels best; ties go to the earlier one.

    With ``families``, a rule's score is its worst family's :func:`family_ranking_quality` (ties: the mean
    over families); without, the :func:`ranking_quality` of all pixels pooled.

    Args:
        distance: ``(N, 1, H, W)`` scaled distance maps of one category's validation images.
        probability: ``(N, 1, H, W)`` their pixel-head probabilities.
        mask: ``(N, 1, H, W)`` their ground truth (anomalous pixels true).
        candidates: Rules to try.
        matching: ``(N, 1, H, W)`` scaled prompt-matching maps, or ``None`` without prompt matching (then
            only rules with ``matching == 0`` may be candidates).
        families: The defect family of each image (normal images: any value), or ``None``.

    Returns:
        ``(best rule, score of every candidate)``: the score is the worst family's mean of pixel AP and pixel
        AUROC (pooled without ``families``).

    Raises:
        ValueError: The masks have no anomalous pixel (nothing to rank), or a candidate needs ``M`` and none
            was given.
    """
    if not bool(mask.any()) or bool(mask.all()):
        msg = "the validation masks have no anomalous pixel: pixel AP cannot rank fusion rules"
        raise ValueError(msg)
    if matching is None and any(rule.matching_weight and not rule.product for rule in candidates):
        msg = "fusion candidates weight the prompt-matching map M, but no M maps were given"
        raise ValueError(msg)
    if families is None:
        scores = {rule: ranking_quality(rule.apply(distance, probability, matching), mask) for rule in candidates}
        best = max(candidates, key=lambda rule: scores[rule])  # max keeps the first of equal values
        return FusionChoice(best, scores)
    per_family = {
        rule: family_ranking_quality(rule.apply(distance, probability, matching), mask, families) for rule in candidates
    }
    best = max(candidates, key=lambda rule: (min(per_family[rule]), sum(per_family[rule])))
    return FusionChoice(best, {rule: min(qualities) for rule, qualities in per_family.items()})


def batch_masks(batch: Any, size: tuple[int, int]) -> torch.Tensor:
    """A validation batch's ground truth as ``(B, 1, *size)`` booleans (all false for a batch of normal images)."""
    count = len(batch.image)
    if batch.gt_mask is None:  # a batch of normal images only
        return torch.zeros(count, 1, *size, dtype=torch.bool)
    masks = batch.gt_mask.float().reshape(count, 1, *batch.gt_mask.shape[-2:])
    return F.interpolate(masks, size=size) > 0.5


@torch.no_grad()
def validation_maps(
    network: PromptMADModel,
    validation: Any,  # noqa: ANN401 - any anomalib dataset
    network_input: Callable[[torch.Tensor], torch.Tensor],
    category_indices: Callable[[Sequence[str]], torch.Tensor],
) -> dict[int, ValidationMaps]:
    """Per true category index: its validation images' maps, pooled to at most ``SELECTION_SIZE`` a side.

    The family of a defect is the one the synthetic validation set assigned it (``anomaly_family``), else the
    image's folder (MVTec's defect type for real defects).

    Args:
        network: A calibrated network (any fusion rules: the components do not depend on them).
        validation: Normal and anomalous images with masks.
        network_input: Turns a batch's images into network input.
        category_indices: ``(paths) -> (B,)`` true category index of each image.
    """
    family_of = getattr(validation, "anomaly_family", lambda path: Path(path).parent.name)
    loader = DataLoader(validation, batch_size=16, shuffle=False, collate_fn=validation.collate_fn)
    collected: dict[int, list[tuple[list[torch.Tensor], str]]] = {}
    for batch in tqdm(loader, desc="PromptMAD calibration (fusion)", leave=False, disable=None):
        images = network_input(batch.image)
        maps = network.component_maps(images)
        size = (min(images.shape[-2], SELECTION_SIZE), min(images.shape[-1], SELECTION_SIZE))
        mask = batch_masks(batch, size)
        components = [maps.distance, maps.probability] + ([maps.matching] if maps.matching is not None else [])
        pooled = [F.adaptive_avg_pool2d(component, size).cpu() for component in components] + [mask]
        for item, label in enumerate(category_indices(batch.image_path).tolist()):
            family = family_of(batch.image_path[item]) if bool(mask[item].any()) else "normal"
            collected.setdefault(label, []).append(([part[item : item + 1] for part in pooled], family))
    result = {}
    for label, items in collected.items():
        parts = [torch.cat(column) for column in zip(*(item for item, _ in items), strict=True)]
        matching = parts[2] if len(parts) == 4 else None  # noqa: PLR2004 - D, P, M, mask
        result[label] = ValidationMaps(parts[0], parts[1], matching, parts[-1], [family for _, family in items])
    return result


def choose_category_rules(
    network: PromptMADModel,
    validation: Any,  # noqa: ANN401 - any anomalib dataset
    categories: Sequence[str],
    network_input: Callable[[torch.Tensor], torch.Tensor],
    category_indices: Callable[[Sequence[str]], torch.Tensor],
) -> dict[str, FusionChoice]:
    """Each category's best rule on the validation split, by its worst defect family.

    Categories without an anomalous validation pixel are left out (nothing to rank).

    Args:
        network: A calibrated network.
        validation: Normal and anomalous images with masks (and, for synthetic defects, ``anomaly_family``).
        categories: Category names in index order.
        network_input: Turns a batch's images into network input.
        category_indices: ``(paths) -> (B,)`` true category index of each image.
    """
    candidates = candidate_rules(with_matching=network.uses_prompt_matching)
    return {
        categories[index]: choose_fusion_rule(
            maps.distance, maps.probability, maps.mask, candidates, maps.matching, maps.families
        )
        for index, maps in sorted(validation_maps(network, validation, network_input, category_indices).items())
        if bool(maps.mask.any())
    }
