# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Checkpoints that survive a crash, and name the file when they cannot be read.

PromptMAD installs these itself (:meth:`PromptMAD.setup <anomalib_promptmad.lightning_model.PromptMAD.setup>`);
nothing needs configuring.

* :class:`AtomicCheckpointIO`: Lightning writes a checkpoint to a file made by ``tempfile.mkstemp()``
  (``$TMPDIR``) and ``shutil.move``\\ s it over the old one. Where ``$TMPDIR`` is another file system
  (tmpfs, a container volume, NFS results) the move is a copy that first truncates the previous, good
  checkpoint: a kill during the copy leaves no usable checkpoint. This IO writes beside the target,
  fsyncs, and ``os.replace``\\ s it into place: a reader sees the old file or the new one, never half of one.
* :func:`install_checkpoint_safety`: checkpoints written every epoch, with a ``last.ckpt`` to resume from.
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.engine.plugins import AnomalibCheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from anomalib_promptmad.infrastructure.atomic_write import write_atomic

__all__ = ["AtomicCheckpointIO", "install_checkpoint_safety", "use_readable_checkpoint_errors"]


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
