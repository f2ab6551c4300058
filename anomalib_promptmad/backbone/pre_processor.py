# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""An anomalib pre-processor that normalises inputs as the chosen timm backbone was trained.

anomalib's default pre-processor normalises with ImageNet's statistics, which suits its ResNet defaults but
not ``tf_efficientnet_lite*`` (trained on inputs scaled to ``[-1, 1]``: ``mean = std = 0.5``).
:class:`BackbonePreProcessor` takes the backbone name and the image size, so that a config file, or the
stock CLI, can set it in two plain values::

    --model.pre_processor anomalib_promptmad.backbone.BackbonePreProcessor
    --model.pre_processor.backbone tf_efficientnet_lite2 --model.pre_processor.image_size 256

The transform is anomalib's usual ``Compose([Resize, Normalize])``, so checkpoints store it as plain data
(anomalib restores it on load, with or without this package's class) and exports embed it as usual.

``anomalib test`` / ``predict`` with ``--ckpt_path``: anomalib's datamodules copy the model's ``Resize`` into
their datasets in ``setup``, which Lightning runs *before* it restores the checkpoint, so the datasets resized
to the size given on the command line (256 by default) while the restored transform then resized to the
trained size: other pixels, other metrics than the test at the end of training. At the start of a test or a
prediction this pre-processor gives the datasets its (restored) resize again, as PromptMAD does for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from .feature_extractor import backbone_mean_std

if TYPE_CHECKING:
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["BackbonePreProcessor"]


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        size = (image_size, image_size)
    else:
        size = tuple(int(side) for side in image_size)
    if len(size) != 2 or min(size) < 1:  # height and width
        msg = f"BackbonePreProcessor: image_size must be one side or [height, width] >= 1, got {image_size!r}"
        raise ValueError(msg)
    return size  # type: ignore[return-value]


class BackbonePreProcessor(PreProcessor):
    """Resize, then normalise with the ``mean``/``std`` of the backbone's timm ``pretrained_cfg``.

    Args:
        backbone: timm architecture, as given to the model (``"tf_efficientnet_lite2"``: mean = std = 0.5).
        image_size: Side, or ``[height, width]``, the images are resized to. Defaults to ``256``, anomalib's.

    Raises:
        ValueError: Unknown timm backbone, or a size that is not one or two positive sides.

    Example:
        >>> from anomalib.models import Padim
        >>> pre_processor = BackbonePreProcessor("tf_efficientnet_lite2", image_size=256)
        >>> model = Padim(backbone="tf_efficientnet_lite2", layers=["blocks.1", "blocks.2", "blocks.4"],
        ...               n_features=100, pre_processor=pre_processor)  # doctest: +SKIP
    """

    def __init__(self, backbone: str = "tf_efficientnet_lite2", image_size: int | Sequence[int] = 256) -> None:
        size = _size(image_size)
        mean, std = backbone_mean_std(backbone)
        super().__init__(transform=Compose([Resize(size, antialias=True), Normalize(mean=mean, std=std)]))
        self.backbone = backbone
        self.image_size = size

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resize the datamodule's datasets as this (possibly checkpoint-restored) transform does."""
        del pl_module
        _resize_datamodule_like_model(trainer)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Resize the datamodule's datasets as this (possibly checkpoint-restored) transform does."""
        del pl_module
        _resize_datamodule_like_model(trainer)


def _resize_datamodule_like_model(trainer: Trainer) -> None:
    """Re-run anomalib's own copy of the model's ``Resize`` into the datasets (idempotent; none without one)."""
    update = getattr(getattr(trainer, "datamodule", None), "_update_augmentations", None)  # AnomalibDataModule's
    if callable(update):
        update()
