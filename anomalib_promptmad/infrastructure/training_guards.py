# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Training guards: resumable randomness and finite losses.

* :func:`reseed_for_epoch`: Lightning checkpoints hold no random-number state, so a run resumed after a
  crash would draw other shuffles, dropout masks and feature jitter than the uninterrupted run. Seeding
  every epoch from ``(run seed, epoch)`` makes a resumed run repeat the interrupted epoch exactly.
* :func:`check_finite_losses`: a NaN or infinite loss would otherwise propagate into the weights and into
  every later checkpoint without any error.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["NonFiniteLossError", "check_finite_losses", "reseed_for_epoch", "run_seed"]


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; raised before the optimiser step can corrupt the weights."""


def run_seed() -> int:
    """Seed of this run: the one given to ``seed_everything`` (``PL_GLOBAL_SEED``), else torch's initial seed."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None and seed.lstrip("-").isdigit() else int(torch.initial_seed() % 2**32)


def reseed_for_epoch(seed: int, epoch: int) -> None:
    """Seed Python, NumPy and torch (all devices) from ``(seed, epoch)`` at the start of an epoch.

    Call it before the epoch's data loader is iterated (Lightning's ``on_train_epoch_start``): the shuffle
    order, dropout and jitter of epoch ``epoch`` then depend on nothing that happened before it.

    Args:
        seed: The run's seed (:func:`run_seed`).
        epoch: The epoch about to start.
    """
    # a large odd multiplier spreads neighbouring (seed, epoch) pairs; 2**32 keeps NumPy happy
    value = (int(seed) * 1_000_003 + int(epoch)) % 2**32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def check_finite_losses(terms: Mapping[str, torch.Tensor], step: int, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` if a loss term is NaN or infinite.

    One device synchronisation per step (the total); the individual terms are only inspected on failure.

    Args:
        terms: Loss terms by name, ``"loss"`` being the total.
        step: Global step (for the message).
        epoch: Epoch (for the message).

    Raises:
        NonFiniteLossError: Naming the offending terms, the step and the likely fixes.
    """
    total = terms["loss"]
    if bool(torch.isfinite(total.detach()).all()):
        return
    bad = {
        name: float(value.detach().float().mean()) for name, value in terms.items() if not torch.isfinite(value).all()
    }
    msg = (
        f"PromptMAD: non-finite loss at epoch {epoch}, global step {step}: {bad}. Training stopped before the "
        "optimiser step, so no checkpoint holds these weights; resume from the last checkpoint after a fix. "
        "Likely fixes: lower `learning_rate` (now too high for this batch size), keep `gradient_clip_val` > 0, "
        "train in full precision (`precision='32-true'`) if mixed precision is on, and check the training "
        "images (a constant or corrupt image can make the feature statistics degenerate)."
    )
    raise NonFiniteLossError(msg)
