# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Deployment behaviour of the PromptMAD Lightning module, kept apart from the method itself.

:class:`DeploymentMixin` is a base class of :class:`~anomalib_promptmad.PromptMAD` (before
``AnomalibModule``, so PromptMAD stays a direct subclass that ``get_model``/``list_models`` see). It adds:

* a check that a checkpoint is PromptMAD's, both where ``Engine.export`` / ``anomalib export`` load one
  (``load_from_checkpoint``) and where a trainer restores ``ckpt_path`` (``on_load_checkpoint``);
* a network built with the checkpoint's architecture when a trainer restores ``ckpt_path`` into a model
  constructed with other settings (``anomalib predict --model PromptMAD --ckpt_path ...`` builds the default
  architecture from the command line before the checkpoint is read);
* clear, early errors when an export backend package is missing (nothing is written);
* one error for predicting with, or exporting, the checkpoint of a training run that did not finish (it was
  never calibrated), saying how to resume it;
* the :class:`~anomalib_promptmad.deploy.predictions.PredictionCSVWriter` callback, so ``anomalib predict``
  writes a per-image score/label/category file next to anomalib's heat-map overlays.
"""

from __future__ import annotations

import inspect
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from anomalib_promptmad.deploy.backends import EXPORT_PACKAGES, require_packages
from anomalib_promptmad.deploy.checkpoint import (
    UncalibratedModelError,
    UnreadableCheckpointError,
    check_promptmad_checkpoint,
    is_damaged_file_error,
    uncalibrated_message,
    unreadable_checkpoint_message,
)
from anomalib_promptmad.deploy.migration import settings_missing_from
from anomalib_promptmad.deploy.predictions import PredictionCSVWriter

__all__ = ["DeploymentMixin"]

logger = logging.getLogger(__name__)

# ONNX opset of PromptMAD's exported graphs: the one torch's dynamo exporter emits (see to_onnx)
_ONNX_OPSET = 18

def _normalised(value: Any) -> Any:
    """Compare hyper-parameters across checkpoints: tuples and lists alike, ``64`` like ``(64, 64)``."""
    if isinstance(value, list | tuple):
        return tuple(_normalised(item) for item in value)
    return value


def _without_missing_prompt_files(checkpoint: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Drop the training prompt files from the settings when they are not on this machine.

    ``PromptMAD.__init__`` reads its prompt files to fail early before training; a trained checkpoint
    already holds the text embeddings they produced, so a checkpoint moved to another machine (or a
    relative path read from another directory) must still load.
    """
    if "prompt_library" in kwargs:
        return kwargs
    saved = (checkpoint.get("hyper_parameters") or {}).get("prompt_library")
    files = [saved] if isinstance(saved, str) else list(saved or [])
    missing = [name for name in files if not Path(name).is_file()]
    if not missing:
        return kwargs
    logger.info(
        "PromptMAD: the prompt files %s the model was trained with are not here; the checkpoint holds the text "
        "embeddings made from them, so they are not needed to load it.",
        missing,
    )
    return {**kwargs, "prompt_library": None}


class DeploymentMixin:
    """Checkpoint checks, export-backend checks and the prediction CSV for PromptMAD (see module docstring)."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | Any, *args: Any, **kwargs: Any) -> Any:
        """Check that ``checkpoint_path`` is a PromptMAD checkpoint, then load it as Lightning does.

        Lightning builds the model from the checkpoint's hyper-parameters *before* any hook runs, so a
        foreign checkpoint must be caught here, before construction.

        Args:
            checkpoint_path: Path of the ``.ckpt`` file (file objects and URLs are passed on unchecked).
            *args: Passed to Lightning's ``load_from_checkpoint``.
            **kwargs: Passed to Lightning's ``load_from_checkpoint``.

        Returns:
            The loaded model.
        """
        if isinstance(checkpoint_path, str | Path) and Path(checkpoint_path).is_file():
            # the same load Lightning is about to do (same `weights_only`: torch's safe default unless the caller
            # opts out); mmap avoids reading the tensors twice
            weights_only = kwargs.get("weights_only")
            options = {} if weights_only is None else {"weights_only": weights_only}
            try:
                checkpoint = torch.load(checkpoint_path, map_location="cpu", mmap=True, **options)
            except pickle.UnpicklingError:
                checkpoint = None  # Lightning's own load below raises the explanatory error
            except RuntimeError as error:
                if not is_damaged_file_error(error):
                    raise
                # torch's own message ("failed finding central directory") names neither the file nor a fix
                raise UnreadableCheckpointError(unreadable_checkpoint_message(checkpoint_path, error)) from None
            if checkpoint is not None:
                check_promptmad_checkpoint(checkpoint, checkpoint_path)
                kwargs = _without_missing_prompt_files(checkpoint, kwargs)
                kwargs = {**settings_missing_from(checkpoint.get("hyper_parameters") or {}), **kwargs}
        model = super().load_from_checkpoint(checkpoint_path, *args, **kwargs)  # type: ignore[misc]
        if isinstance(checkpoint_path, str | Path):
            model._checkpoint_path = str(checkpoint_path)  # named by the error for an unfinished checkpoint
        return model

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a foreign checkpoint before anything of it is applied (trainer ``ckpt_path`` restores)."""
        check_promptmad_checkpoint(checkpoint, "ckpt_path")
        # where the checkpoint was in its training run, for the error of an unfinished one
        self._checkpoint_epoch = checkpoint.get("epoch")
        self._checkpoint_max_epochs = (checkpoint.get("hyper_parameters") or {}).get("max_epochs")
        trainer = getattr(self, "_trainer", None)
        self._checkpoint_path = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        self._adopt_checkpoint_architecture(checkpoint.get("hyper_parameters") or {})
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]  # restores the pre-processor's transform
        self._resize_datamodule_like_pre_processor()

    def _resize_datamodule_like_pre_processor(self) -> None:
        """Give the trainer's datamodule the resize of the pre-processor just restored from a checkpoint.

        anomalib's datamodules copy the model's ``Resize`` into their datasets in ``setup``, which the trainer
        runs *before* it restores ``ckpt_path``. A model built with default arguments (``anomalib test --model
        PromptMAD --ckpt_path ...``) therefore had its datasets resize every image to 256 px, then the restored
        pre-processor resized them again to the checkpoint's size: other pixels, other metrics than the test at
        the end of training. Updating the datasets again here makes them resize exactly as during training.
        """
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        update = getattr(datamodule, "_update_augmentations", None)  # anomalib's AnomalibDataModule
        if callable(update):
            update()

    def _adopt_checkpoint_architecture(self, saved: dict[str, Any]) -> None:
        """Rebuild ``self.model`` with the network settings saved in the checkpoint where they differ.

        Lightning loads the state dict strictly right after this hook, so a model built with other sizes
        would fail with a long list of shape mismatches. The backbone's weights are in the state dict, so
        the rebuilt backbone starts empty (``backbone_weights="none"``) instead of reading weights twice.
        """
        from anomalib_promptmad.torch_model import PromptMADModel

        names = [name for name in inspect.signature(PromptMADModel.__init__).parameters if name != "self"]
        saved = {**settings_missing_from(saved), **saved}
        current = dict(self.hparams)  # type: ignore[attr-defined]
        if "image_size" in saved and isinstance(saved["image_size"], int):
            saved = {**saved, "image_size": (saved["image_size"], saved["image_size"])}
        differing = [
            name
            for name in names
            if name in saved
            and name != "backbone_weights"
            and _normalised(saved[name])
            != _normalised(
                current.get(name, getattr(self.model, name, None))  # type: ignore[attr-defined]
            )
        ]
        if not differing:
            return
        logger.info("PromptMAD: building the network saved in the checkpoint (differs in %s)", differing)
        settings = {name: saved[name] for name in names if name in saved}
        settings["backbone_weights"] = "none"
        device = next(self.model.parameters()).device  # type: ignore[attr-defined]
        self.model = PromptMADModel(**settings).to(device)
        previous_size = self.image_size  # type: ignore[has-type]
        self.image_size = tuple(settings.get("image_size", self.image_size))  # type: ignore[has-type]
        self._resize_pre_processor(previous_size, self.image_size)
        self.hparams.update({name: saved[name] for name in differing})  # type: ignore[attr-defined]

    def _resize_pre_processor(self, previous: tuple[int, ...], size: tuple[int, ...]) -> None:
        """Make the default pre-processor (a lone ``Resize`` to ``previous``) resize to ``size`` instead.

        Checkpoints written by anomalib >= 2.7 also restore the transform itself right after this; older ones do
        not, and a model built from default arguments would then feed the checkpoint's network 256 px images. A
        user's own pre-processor (anything but the default resize) is left as it is.
        """
        from anomalib.pre_processing import PreProcessor
        from torchvision.transforms.v2 import Resize

        pre_processor = getattr(self, "pre_processor", None)
        if tuple(previous) == tuple(size) or not isinstance(pre_processor, PreProcessor):
            return
        transform = pre_processor.transform
        if isinstance(transform, Resize) and tuple(transform.size) == tuple(previous):
            fresh = type(self).configure_pre_processor(tuple(size))  # type: ignore[attr-defined]
            # change the existing callback in place: the trainer already holds it among its callbacks
            pre_processor.transform = fresh.transform
            pre_processor.export_transform = fresh.export_transform

    def require_calibrated(self, action: str) -> None:
        """Raise :class:`UncalibratedModelError` unless the model was calibrated (its training finished).

        A run killed before its last epoch leaves ``model.ckpt``/``last.ckpt`` without the calibration
        buffers: predicting would need the training images, and an export would write a graph that fails
        when it runs. Every such use is refused with the same message, which says how to resume.

        Args:
            action: What is refused, for the message (``"predict"``, ``"export to ONNX"``, ...).

        Raises:
            UncalibratedModelError: Naming the checkpoint and the command that resumes its training.
        """
        if self.model.is_calibrated:  # type: ignore[attr-defined]
            return
        max_epochs = getattr(self, "_checkpoint_max_epochs", None)
        source = getattr(self, "_checkpoint_path", None)
        epoch = getattr(self, "_checkpoint_epoch", None)
        raise UncalibratedModelError(uncalibrated_message(action, source, epoch, max_epochs))

    @property
    def restored_from_checkpoint(self) -> bool:
        """Whether the weights were read from a checkpoint (``load_from_checkpoint`` or a trainer ``ckpt_path``)."""
        return any(getattr(self, name, None) is not None for name in ("_checkpoint_path", "_checkpoint_epoch"))

    def to_torch(self, *args: Any, **kwargs: Any) -> Path:
        """Anomalib's torch export of a calibrated model (an unfinished one would crash when it runs)."""
        self.require_calibrated("export to torch")
        return super().to_torch(*args, **kwargs)  # type: ignore[misc]

    def to_onnx(self, *args: Any, **kwargs: Any) -> Path:
        """Anomalib's ONNX export, after checking that the model is calibrated and ``onnx``/``onnxscript`` import."""
        self.require_calibrated("export to ONNX")
        require_packages(EXPORT_PACKAGES["onnx"], "ONNX export")
        # the dynamo exporter writes opset 18; anomalib asks for 14 by default, and the down-conversion then fails
        # (Pad has no adapter below 18) with a logged traceback, leaving the graph at 18 anyway: ask for 18
        kwargs.setdefault("opset_version", _ONNX_OPSET)
        return super().to_onnx(*args, **kwargs)  # type: ignore[misc]

    def to_openvino(self, *args: Any, **kwargs: Any) -> Path:
        """Anomalib's OpenVINO export, after checking calibration and the openvino/onnx/onnxscript imports."""
        self.require_calibrated("export to OpenVINO")
        require_packages(EXPORT_PACKAGES["openvino"], "OpenVINO export")
        return super().to_openvino(*args, **kwargs)  # type: ignore[misc]

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """The model's callbacks, then the prediction CSV writer.

        Last, so that it reads scores and labels after anomalib's post-processor has normalised them.
        """
        callbacks = super().configure_callbacks()  # type: ignore[misc]
        callbacks = list(callbacks) if isinstance(callbacks, Sequence) else [callbacks]
        return [*callbacks, PredictionCSVWriter()]
