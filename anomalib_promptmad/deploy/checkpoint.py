# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Recognise a checkpoint that was not written by PromptMAD, and say so in one sentence.

Without this check a checkpoint of another model passed as PromptMAD fails deep inside model
construction (its hyper-parameters are fed to ``PromptMAD.__init__``) or with a ``load_state_dict`` list of
hundreds of missing keys. The check looks at the saved weights (which PromptMAD always has once trained)
and, to help the user, names the anomalib model whose constructor matches the saved hyper-parameters.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "NotAPromptMADCheckpointError",
    "UncalibratedModelError",
    "UnreadableCheckpointError",
    "check_promptmad_checkpoint",
    "guess_model_name",
    "is_damaged_file_error",
    "uncalibrated_message",
    "unreadable_checkpoint_message",
]

# Buffers and a submodule that every PromptMAD checkpoint holds (the calibration buffers are saved even
# when empty, so an untrained PromptMAD checkpoint still passes; it fails later with its own message).
_REQUIRED_KEYS = ("model.prototypes", "model.prompt_memory", "model.map_scale")
_REQUIRED_PREFIX = "model.reconstructor."


class NotAPromptMADCheckpointError(ValueError):
    """The checkpoint was written by another model, or is not a Lightning checkpoint at all."""


class UnreadableCheckpointError(RuntimeError):
    """The checkpoint file is damaged (truncated copy, interrupted download): torch cannot read it at all."""


# what torch says about a file that is not a complete zip archive (every checkpoint since torch 1.6 is one)
_DAMAGED_FILE_MARKERS = ("failed finding central directory", "PytorchStreamReader failed", "zip archive")


def is_damaged_file_error(error: BaseException) -> bool:
    """Whether ``error`` (from ``torch.load``) says the file is a damaged or incomplete archive."""
    return isinstance(error, RuntimeError) and any(marker in str(error) for marker in _DAMAGED_FILE_MARKERS)


def unreadable_checkpoint_message(path: str | Path, error: BaseException) -> str:
    """The message for a checkpoint file torch cannot read: its path, its size, the likely cause and the fix."""
    file = Path(path)
    size = f"{file.stat().st_size:,} bytes" if file.is_file() else "missing"
    return (
        f"cannot read the checkpoint '{path}' ({size}): it is not a complete checkpoint file (torch: {error}). It was "
        "probably cut short by an interrupted copy or download: copy it again from where it was trained (compare "
        "the sizes), or pass another checkpoint of the run (model.ckpt, last.ckpt)."
    )


class UncalibratedModelError(RuntimeError):
    """The model's training did not finish: it was never calibrated, so it cannot predict or be exported."""


def uncalibrated_message(action: str, source: str | Path | None, epoch: int | None, max_epochs: int | None) -> str:
    """The one message for predicting with, or exporting, a PromptMAD model that was never calibrated.

    Args:
        action: What was refused, e.g. ``"predict"`` or ``"export to ONNX"``.
        source: The checkpoint the model came from (``None``: a model built in this process).
        epoch: The checkpoint's ``epoch`` (0-based epoch during which it was saved), where known.
        max_epochs: The training length in its hyper-parameters, where set there.

    Returns:
        The message: what is wrong, and the command that fixes it.
    """
    why = (
        "PromptMAD fits its image prompts, prototypes and map scales on the training images after the last "
        "epoch, so an unfinished model cannot"
    )
    if source is None:
        return (
            f"cannot {action}: this PromptMAD model was never calibrated (its training did not finish). {why} "
            f"{action}. Train it to the end (anomalib train / Engine.fit), or load the model.ckpt of a finished run."
        )
    path = Path(source)
    resume = path.with_name("last.ckpt") if path.with_name("last.ckpt").is_file() else path
    done = f" (saved during epoch {epoch + 1}{f' of {max_epochs}' if max_epochs else ''})" if epoch is not None else ""
    return (
        f"cannot {action}: '{source}' is the checkpoint of a PromptMAD training run that did not finish{done}. "
        f"{why} {action}. Resume the training: run the same `anomalib train ...` command again with "
        f"`--ckpt_path {resume}` (in Python: `Engine().fit(model, datamodule, ckpt_path='{resume}')`), then use "
        "the model.ckpt it writes at the end."
    )


def _model_classes() -> list[type]:
    """Every imported subclass of anomalib's ``AnomalibModule`` (direct or not)."""
    from anomalib.models.components import AnomalibModule

    found: list[type] = []
    pending = list(AnomalibModule.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls not in found:
            found.append(cls)
            pending.extend(cls.__subclasses__())
    return found


def guess_model_name(hyper_parameters: Mapping[str, Any]) -> str | None:
    """Name of the anomalib model whose ``__init__`` best matches saved hyper-parameters.

    Args:
        hyper_parameters: The checkpoint's ``hyper_parameters``.

    Returns:
        The class name of the model whose constructor accepts every saved hyper-parameter with the fewest
        unused arguments, or ``None`` when none accepts them all (or there is nothing to match).
    """
    names = set(hyper_parameters)
    if not names:
        return None
    best: tuple[int, str] | None = None
    for cls in _model_classes():
        if cls.__name__ == "PromptMAD":
            continue
        try:
            parameters = set(inspect.signature(cls.__init__).parameters) - {"self"}
        except (TypeError, ValueError):
            continue
        if names <= parameters:
            candidate = (len(parameters - names), cls.__name__)
            best = candidate if best is None or candidate < best else best
    return best[1] if best else None


def check_promptmad_checkpoint(checkpoint: Mapping[str, Any], source: str | Path = "the checkpoint") -> None:
    """Raise a clear error unless ``checkpoint`` holds a PromptMAD model.

    Args:
        checkpoint: A loaded Lightning checkpoint (``torch.load`` of the ``.ckpt`` file).
        source: Where it came from, for the message.

    Raises:
        NotAPromptMADCheckpointError: If it is not a Lightning checkpoint, or not PromptMAD's.
    """
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        msg = f"'{source}' is not a Lightning checkpoint of a PromptMAD model (it has no 'state_dict')."
        raise NotAPromptMADCheckpointError(msg)
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing or not any(key.startswith(_REQUIRED_PREFIX) for key in state):
        hyper_parameters = checkpoint.get("hyper_parameters") or {}
        guess = guess_model_name(hyper_parameters) if isinstance(hyper_parameters, Mapping) else None
        origin = f"it looks like a {guess} checkpoint" if guess else "it was written by another model"
        msg = (
            f"'{source}' is not a PromptMAD checkpoint: {origin} (it lacks PromptMAD's weights, e.g. "
            f"{(missing or [_REQUIRED_PREFIX + '*'])[0]}). Pass the checkpoint of a trained PromptMAD model, or "
            f"select the model the checkpoint belongs to{f' (--model {guess})' if guess else ''}."
        )
        raise NotAPromptMADCheckpointError(msg)
