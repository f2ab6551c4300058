# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Training guards: atomic checkpoints, resumable randomness, finite losses, supported precisions.

PromptMAD installs these itself (:meth:`PromptMAD.setup <anomalib_promptmad.lightning_model.PromptMAD.setup>`
and its training hooks); nothing needs configuring.

* :class:`AtomicCheckpointIO`: Lightning writes a checkpoint to a file made by ``tempfile.mkstemp()``
  (``$TMPDIR``) and ``shutil.move``\\ s it over the old one. Where ``$TMPDIR`` is another file system
  (tmpfs, a container volume, NFS results) the move is a copy that first truncates the previous, good
  checkpoint: a kill during the copy leaves no usable checkpoint. This IO writes beside the target,
  fsyncs, and ``os.replace``\\ s it into place: a reader sees the old file or the new one, never half of one.
* :func:`reseed_for_epoch`: Lightning checkpoints hold no random-number state, so a run resumed after a
  crash would draw other shuffles, dropout masks and feature jitter than the uninterrupted run. Seeding
  every epoch from ``(run seed, epoch)`` makes a resumed run repeat the interrupted epoch exactly.
* :func:`check_finite_losses`: a NaN or infinite loss would otherwise propagate into the weights and into
  every later checkpoint without any error.
* :func:`check_precision`: which Lightning ``precision`` settings PromptMAD trains with.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from anomalib.engine.plugins import AnomalibCheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from anomalib_promptmad.atomic_write import write_atomic

__all__ = [
    "SUPPORTED_PRECISIONS",
    "AtomicCheckpointIO",
    "NonFiniteLossError",
    "check_finite_losses",
    "check_precision",
    "install_checkpoint_safety",
    "reseed_for_epoch",
    "run_seed",
    "use_readable_checkpoint_errors",
]

# Lightning precision flags PromptMAD trains with (tested: 32-true and bf16-mixed on CPU).
SUPPORTED_PRECISIONS: tuple[str, ...] = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true", "64")


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; raised before the optimiser step can corrupt the weights."""


class AtomicCheckpointIO(AnomalibCheckpointIO):
    """anomalib's checkpoint IO (``weights_only`` loading with its allow-list), writing atomically.

    Local paths are written to a hidden temporary file in the target's folder, flushed to disk and renamed
    over the target with :func:`os.replace` (atomic on POSIX and Windows within one file system). Remote
    URLs (``s3://``, ...) keep Lightning's own transactional write.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: The checkpoint dictionary.
            path: Target file.
            storage_options: Not supported by the torch IO (as in Lightning); must be ``None``.
        """
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            msg = f"{type(self).__name__} does not support storage_options, got {storage_options!r}"
            raise TypeError(msg)
        write_atomic(path, lambda file: torch.save(checkpoint, file))

    def load_checkpoint(self, path: _PATH, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """anomalib's load; a damaged file (truncated copy) is reported with its path and the fix.

        Args:
            path: The checkpoint file.
            *args: Passed on (``map_location``, ``weights_only``).
            **kwargs: Passed on.
        """
        from anomalib_promptmad.deploy.checkpoint import (
            UnreadableCheckpointError,
            is_damaged_file_error,
            unreadable_checkpoint_message,
        )

        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except RuntimeError as error:
            if not is_damaged_file_error(error):
                raise
            raise UnreadableCheckpointError(unreadable_checkpoint_message(path, error)) from None


def use_readable_checkpoint_errors(trainer: Trainer) -> None:
    """Read (and write) the trainer's checkpoints through :class:`AtomicCheckpointIO`, in every stage.

    ``test``/``predict`` with ``ckpt_path`` load the file through the strategy's IO: with this one a truncated
    file is named in the error. Lightning's or anomalib's plain torch IO is replaced; a user's own is kept.

    Args:
        trainer: The trainer, before it restores ``ckpt_path``.
    """
    strategy = trainer.strategy
    current = strategy.checkpoint_io
    if type(current) in {TorchCheckpointIO, AnomalibCheckpointIO}:
        strategy.checkpoint_io = AtomicCheckpointIO(extra_safe_globals=getattr(current, "extra_safe_globals", None))


def install_checkpoint_safety(trainer: Trainer) -> None:
    """Make ``trainer``'s checkpoints atomic, written every epoch, and with a ``last.ckpt`` to resume from.

    The strategy's IO is replaced only when it is Lightning's or anomalib's plain torch IO (a user's own
    IO is kept). ``ModelCheckpoint`` callbacks whose ``save_last`` was left unset get a ``last.ckpt``: a
    checkpoint chosen by a monitored metric is not the one to resume from. Without a monitor (anomalib's
    default) it is a relative symbolic link to the checkpoint just saved (a copy where links are not allowed).

    Args:
        trainer: The trainer, before it writes its first checkpoint.
    """
    use_readable_checkpoint_errors(trainer)
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if callback.save_last is None:
            # without a monitor every epoch's checkpoint is saved, so last.ckpt can be a link to it (one file
            # on disk instead of two identical copies of 100+ MB); with one, the last top-k checkpoint may be
            # older than the last epoch, so last.ckpt must be a full checkpoint of its own
            callback.save_last = "link" if callback.monitor is None else True
        if callback.monitor is None and callback._save_on_train_epoch_end is None:
            # PromptMAD validates at the last epoch only (check_val_every_n_epoch = max_epochs), and Lightning
            # then saves only after validation: a crash would lose every epoch. Save after every training
            # epoch instead (after the epoch's validation, if any, so the last checkpoint is calibrated).
            callback._save_on_train_epoch_end = True


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


def check_precision(precision: str | int | None) -> None:
    """Refuse Lightning precisions PromptMAD does not train correctly with.

    Args:
        precision: ``trainer.precision`` (e.g. ``"32-true"``, ``"bf16-mixed"``).

    Raises:
        ValueError: For pure half precision (``16-true``, ``bf16-true``) and unknown settings.
    """
    name = str(precision)
    if name in SUPPORTED_PRECISIONS:
        return
    msg = (
        f"PromptMAD does not train with precision={name!r}: "
        + (
            "pure half precision keeps the frozen backbone's batch-norm statistics, the feature distances and "
            "AdamW's moments in 16 bits, where the squared feature distances overflow (fp16) or lose the small "
            "differences the model learns (bf16). "
            if name in {"16-true", "16", "bf16-true", "bf16", "half"}
            else ""
        )
        + f"Use one of {list(SUPPORTED_PRECISIONS)}; 'bf16-mixed' (CPU and recent GPUs) or '16-mixed' (GPU) "
        "give the speed of half precision with full-precision weights."
    )
    raise ValueError(msg)
