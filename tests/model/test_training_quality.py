# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""What a short training run on the demo data achieves: falling losses, localised defects, right categories."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

# Measured with the session's run (8 epochs of 9 steps, 64 px, seed 0, prompt matching on): pixel AUROC 0.62
# over all test images, 0.80 as the mean of the categories (fabric 0.996, disc 0.97, circuit 0.43). Before
# prompt matching and the new synthesis: 0.77 pooled, 0.73 mean (fabric 0.98, disc 0.67, circuit 0.53).
# Circuit's validation split (held-out synthetic families) ranked "M only" best (0.69 against 0.37 for P
# only), but its test defects are seen by P (0.74) and not by M (0.43) on the 8 x 8 matching grid of a 64 px
# image: the pooled figure pays for that choice. A run this short is noisy from one step to the next, so the
# bounds sit between chance (0.5) and the measured values.
MIN_PIXEL_AUROC = 0.55
MIN_MEAN_PIXEL_AUROC = 0.65
MIN_CATEGORY_ACCURACY = 0.95


@pytest.mark.parametrize("term", ["reconstruction", "focal", "dice", "loss"])
def test_short_training_lowers_every_loss_term(trained, term: str) -> None:
    """The epoch mean of every loss term is lower after the last epoch than after the first."""
    history = [epoch[f"train_{term}"] for epoch in trained.history]
    print(f"train_{term} per epoch: {[round(value, 4) for value in history]}")  # shown with pytest -s
    assert len(history) == len(trained.history) >= 2
    assert history[-1] < history[0], f"train_{term} per epoch: {history}"


def test_trained_model_localises_demo_defects(trained) -> None:
    """Pixel AUROC on the demo test set is clearly above chance."""
    metrics = trained.test_metrics
    print({name: round(value, 3) for name, value in metrics.items() if name.endswith("AUROC")})
    assert metrics["pixel_AUROC"] > MIN_PIXEL_AUROC, metrics
    # PerCategoryMetrics: the mean over categories of per-category pixel AUROC, as in the multi-class papers
    assert metrics["mean/pixel_AUROC"] > MIN_MEAN_PIXEL_AUROC, metrics


def test_trained_model_infers_the_category_of_test_images(trained) -> None:
    """The nearest-prototype category of test images is right."""
    assert trained.test_metrics["test_category_accuracy"] >= MIN_CATEGORY_ACCURACY
