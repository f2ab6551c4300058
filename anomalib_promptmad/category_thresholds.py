# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category thresholds: anomalib's F1-adaptive threshold, learned on each category's validation images.

anomalib learns one image threshold and one pixel threshold per model, on its validation split. A unified
PromptMAD serves several categories whose fused maps have very different ranges: a category fused with
``D * P`` scores normal images near 0, one fused with ``M`` near 1. On the four real categories here one
threshold over all of them labelled every defective pill and tire normal (image F1 0.0) and flagged 30 % of
the good transistors. The model knows each image's category, so it learns the threshold the way anomalib
would for a model of that category alone (:class:`~anomalib.metrics.F1AdaptiveThreshold` on the category's
validation images) and divides its outputs by it: every category's threshold becomes 1 in fused units, 0.5
after the model's ``x / (1 + x)``, where the post-processor's own (pooled) F1-adaptive threshold then lands.

Dividing by a positive per-category constant changes no ranking within a category: per-category AUROC, AP
and AUPRO are untouched; only thresholded outputs (``pred_label``, ``pred_mask``) change. A category without
a defect in the validation split gets anomalib's fallback (its highest normal score: its normal validation
images are not flagged); one without any validation image keeps 1.

Example:
    >>> import torch
    >>> scores = torch.tensor([0.1, 0.2, 0.6, 0.9])
    >>> labels = torch.tensor([0, 0, 1, 1])
    >>> round(f1_adaptive_threshold(scores, labels), 3)
    0.6
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from anomalib.metrics import F1AdaptiveThreshold
from torch.utils.data import DataLoader
from tqdm import tqdm

from anomalib_promptmad.fusion_rule import batch_masks

if TYPE_CHECKING:
    from anomalib_promptmad.torch_model import PromptMADModel

__all__ = ["CategoryThresholds", "category_thresholds", "f1_adaptive_threshold"]


class CategoryThresholds(NamedTuple):
    """Per-category thresholds in fused units (before ``x / (1 + x)``), each ``(K,)``."""

    image: torch.Tensor
    pixel: torch.Tensor


def f1_adaptive_threshold(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The F1-maximising threshold of ``scores`` against binary ``labels`` (anomalib's rule; any shapes)."""
    metric = F1AdaptiveThreshold(fields=["pred_score", "gt_label"])  # as the post-processor builds it
    metric.update(SimpleNamespace(pred_score=scores.flatten().float(), gt_label=labels.flatten().long()))
    return float(metric.compute())


@torch.no_grad()
def category_thresholds(
    network: PromptMADModel,
    validation: Any,
    count: int,
    network_input: Callable[[torch.Tensor], torch.Tensor],
    category_indices: Callable[[Sequence[str]], torch.Tensor],
) -> CategoryThresholds:
    """Each category's F1-adaptive image and pixel thresholds on the validation split.

    Args:
        network: A network calibrated up to its thresholds (prototypes, scales, banks and fusion rules), in
            eval mode. Its thresholds are set to 1 (the outputs are measured unthresholded); set the returned ones.
        validation: Normal and anomalous images with masks, or ``None``.
        count: Number of categories.
        network_input: Turns a batch's images into network input.
        category_indices: ``(paths) -> (B,)`` true category index of each image.

    Returns:
        ``(image, pixel)`` thresholds, ``(count,)`` each, in fused units; 1 for a category without validation
        images.
    """
    image = torch.ones(count)
    pixel = torch.ones(count)
    if validation is None or len(validation) == 0:
        return CategoryThresholds(image, pixel)
    # measured on the unthresholded outputs: thresholds of 1 leave the fused values as they are
    network.set_thresholds(image, pixel)
    scores: dict[int, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    loader = DataLoader(validation, batch_size=16, shuffle=False, collate_fn=validation.collate_fn)
    for batch in tqdm(loader, desc="PromptMAD calibration (thresholds)", leave=False, disable=None):
        images = network_input(batch.image)
        predictions = network(images)
        maps = predictions.anomaly_map.cpu()
        masks = batch_masks(batch, (maps.shape[-2], maps.shape[-1]))
        labels = batch.gt_label.flatten().cpu()
        for item, category in enumerate(category_indices(batch.image_path).tolist()):
            row = (predictions.pred_score[item : item + 1].cpu(), labels[item : item + 1], maps[item], masks[item])
            scores.setdefault(category, []).append(row)
    for category, rows in scores.items():
        score, label, anomaly_map, mask = (torch.cat([row[i].flatten() for row in rows]) for i in range(4))
        image[category] = _fused(f1_adaptive_threshold(score, label))
        pixel[category] = _fused(f1_adaptive_threshold(anomaly_map, mask))
    return CategoryThresholds(image, pixel)


def _fused(output: float) -> float:
    """The fused value ``x`` whose output ``x / (1 + x)`` is ``output``."""
    output = min(output, 1.0 - 1e-6)
    return output / (1.0 - output)
