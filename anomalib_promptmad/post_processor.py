# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Post-processing that keeps the order of scores: a sigmoid instead of a clamp.

anomalib's :class:`~anomalib.post_processing.PostProcessor` maps scores to
``clamp((x - threshold) / (max - min) + 0.5, 0, 1)`` with ``min``/``max`` from validation data. Test
scores beyond the validation range become ties at 0 or 1, which lowers AUROC/AP computed from the
normalised maps. :class:`OrderPreservingPostProcessor` uses ``sigmoid(4 (x - threshold) / (max - min))``:
the same value (0.5) and slope at the threshold, so thresholds and ``image_sensitivity`` behave as in
anomalib, but strictly monotone, so rankings are kept. (With normalisation off, anomalib thresholds raw
scores at the fixed 0.5 instead of the learned threshold, so normalising is the right way round.)
"""

from __future__ import annotations

import torch
from anomalib.post_processing import PostProcessor

__all__ = ["OrderPreservingPostProcessor"]


class OrderPreservingPostProcessor(PostProcessor):
    """anomalib's post-processor with a monotone sigmoid normalisation (see module docstring)."""

    @staticmethod
    def _normalize(
        preds: torch.Tensor | None,
        norm_min: torch.Tensor,
        norm_max: torch.Tensor,
        threshold: torch.Tensor,
    ) -> torch.Tensor | None:
        """Normalise ``preds`` around ``threshold`` into (0, 1) without ties.

        Args:
            preds: Scores or maps; returned unchanged when ``None`` or when no statistics exist yet.
            norm_min: Minimum of the validation scores.
            norm_max: Maximum of the validation scores.
            threshold: Learned threshold (``NaN`` -> the middle of the range).

        Returns:
            Normalised tensor of the same shape, or ``None``.
        """
        if preds is None:
            return preds
        threshold = torch.where(torch.isnan(threshold), (norm_max + norm_min) / 2, threshold)
        value_range = norm_max - norm_min
        safe_range = torch.where(value_range > 0, value_range, torch.ones_like(value_range))
        normalized = torch.sigmoid(4 * (preds - threshold) / safe_range)
        has_range = ~torch.isnan(norm_min) & ~torch.isnan(norm_max)
        return torch.where(has_range, normalized, preds)
