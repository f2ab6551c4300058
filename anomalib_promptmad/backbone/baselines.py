# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Run anomalib's own baselines (PaDiM, PatchCore, ...) on the same offline EfficientNet-Lite weights.

anomalib's ``TimmFeatureExtractor`` calls ``timm.create_model(backbone, pretrained=pre_trained,
pretrained_cfg=None, features_only=True, ...)``, so timm's pretrained-config registry decides where the
weights come from. :func:`use_packaged_weights_for_timm` registers, for ``tf_efficientnet_lite0`` and
``tf_efficientnet_lite2``, a pretrained tag ``packaged`` whose ``file`` is the converted weights file
(:func:`~anomalib_promptmad.backbone.efficientnet_lite.converted_weights_file`), and makes it the
architecture's default. timm loads a configured ``file`` before trying the hub, so no network is needed.
It changes timm's registry for the running process only; call it before building the model.

These backbones expect inputs normalised with ``mean = std = 0.5`` (timm's ``pretrained_cfg``), not
with ImageNet's statistics that anomalib's default pre-processor uses: pass
:func:`baseline_pre_processor` as the model's ``pre_processor``.

Example:
    >>> from anomalib.models import Padim
    >>> from anomalib_promptmad.backbone import baseline_pre_processor, use_packaged_weights_for_timm
    >>> use_packaged_weights_for_timm()  # doctest: +SKIP
    >>> model = Padim(
    ...     backbone="tf_efficientnet_lite2",  # or "tf_efficientnet_lite2.packaged" to be explicit
    ...     layers=["blocks.1", "blocks.2", "blocks.4"],  # strides 4 / 8 / 16, 24 + 48 + 120 channels
    ...     n_features=100,  # anomalib only has defaults for resnet18 / wide_resnet50_2
    ...     pre_processor=baseline_pre_processor("tf_efficientnet_lite2", (256, 256)),
    ... )  # doctest: +SKIP

The ``timm`` tag of the same weights stays reachable as ``tf_efficientnet_lite2.in1k`` (hub download).
For programs that do not run this code first (the stock ``anomalib`` command), ``promptmad-weights install``
puts the same weights in the hub cache instead (:mod:`~anomalib_promptmad.backbone.hub_cache`), and
:class:`~anomalib_promptmad.backbone.BackbonePreProcessor` gives a config file this normalisation.
ReverseDistillation cannot use these backbones: anomalib only ships ResNet decoders for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from timm.models import _registry
from torchvision.transforms.v2 import Compose, Normalize, Resize

from .efficientnet_lite import PACKAGED_MODELS, converted_weights_file, is_packaged, packaged_weights_source
from .feature_extractor import backbone_mean_std

if TYPE_CHECKING:
    from anomalib.pre_processing import PreProcessor

__all__ = ["PACKAGED_TAG", "baseline_pre_processor", "use_packaged_weights_for_timm"]

PACKAGED_TAG = "packaged"


def use_packaged_weights_for_timm(model_names: Sequence[str] = PACKAGED_MODELS) -> dict[str, Path]:
    """Make ``timm.create_model(name, pretrained=True)`` load the packaged offline weights.

    Registers ``<name>.packaged`` and makes it the default pretrained config of ``<name>``. Idempotent.

    Args:
        model_names: Architectures to switch; each must be one of ``PACKAGED_MODELS``.

    Returns:
        ``{model name: converted weights file}``.

    Raises:
        ValueError: A name without packaged weights.
    """
    files: dict[str, Path] = {}
    for name in model_names:
        if not is_packaged(name):
            msg = f"No packaged offline weights for {name!r}; supported names: {', '.join(PACKAGED_MODELS)}."
            raise ValueError(msg)
        files[name] = converted_weights_file(name)
        config = dataclasses.replace(
            _registry.get_pretrained_cfg(name),
            file=str(files[name]),
            tag=PACKAGED_TAG,
            description=f"ImageNet weights from {packaged_weights_source(name)}, loaded offline",
        )
        tagged = f"{name}.{PACKAGED_TAG}"
        # timm has no public API to add a pretrained tag to a registered architecture
        _registry._model_pretrained_cfgs[tagged] = config
        _registry._model_pretrained_cfgs[name] = config
        _registry._model_has_pretrained.add(tagged)
        if tagged not in _registry._model_with_tags[name]:
            _registry._model_with_tags[name].append(tagged)
    return files


def baseline_pre_processor(backbone: str, image_size: tuple[int, int] = (256, 256)) -> PreProcessor:
    """Build an anomalib ``PreProcessor`` that resizes and normalises with the backbone's own statistics.

    Same transform as anomalib's default (``Resize`` + ``Normalize``), but with the ``mean``/``std`` of
    the backbone's timm ``pretrained_cfg`` (0.5 for ``tf_efficientnet_lite*``) instead of ImageNet's.

    Args:
        backbone: timm architecture name, as given to the anomalib model.
        image_size: ``(height, width)`` after resizing. Defaults to ``(256, 256)``.

    Returns:
        Pre-processor mapping ``(B, 3, H, W)`` images in ``[0, 1]`` to ``(B, 3, *image_size)`` inputs.
    """
    # imported here: anomalib pulls in lightning (seconds), which the feature extractor alone does not need
    from anomalib.pre_processing import PreProcessor

    mean, std = backbone_mean_std(backbone)
    return PreProcessor(transform=Compose([Resize(image_size, antialias=True), Normalize(mean=mean, std=std)]))
