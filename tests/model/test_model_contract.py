# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The anomalib model contract of PromptMAD: checkpoints, validate/test/predict, determinism, bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from torch.utils.data import DataLoader

import anomalib_promptmad.prompts.category_embeddings as category_embeddings
import anomalib_promptmad.prompts as prompts
import anomalib_promptmad.prompts.text_encoder as text_encoder
from anomalib_promptmad import PromptMAD


def _forbid_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of building a text encoder fail: inference must not need one."""

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "a trained PromptMAD must not build a text encoder"
        raise AssertionError(msg)

    for module in (category_embeddings, prompts, text_encoder):
        monkeypatch.setattr(module, "build_text_encoder", refuse)


@torch.no_grad()
def _maps(model: PromptMAD, images: torch.Tensor) -> torch.Tensor:
    """Raw ``(B, 1, H, W)`` anomaly maps of the torch model (eval mode)."""
    model.eval()
    return model.model(images).anomaly_map


def test_checkpoint_records_categories_and_text_encoder(trained) -> None:
    """The checkpoint carries the categories, the encoder used and the text embeddings."""
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["categories"] == ["circuit", "disc", "fabric"] == trained.model.categories
    assert hparams["text_encoder"] == "minilm"
    assert hparams["backbone_weights_used"].startswith("packaged")
    # the class text embeddings travel with the weights, so inference needs no text encoder
    embeddings = checkpoint["state_dict"]["model.text_tokens.embeddings"]
    assert embeddings.shape == (3, 2, 384)


def test_load_from_checkpoint_gives_identical_maps_without_a_text_encoder(
    trained, test_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_from_checkpoint restores the exact model, and nothing builds a text encoder."""
    images, _ = test_images
    expected = _maps(trained.model, images)
    _forbid_text_encoder(monkeypatch)
    loaded = PromptMAD.load_from_checkpoint(trained.checkpoint)
    assert loaded.categories == trained.model.categories
    assert loaded.hparams["text_encoder"] == "minilm"
    assert loaded.model.is_calibrated
    assert torch.equal(_maps(loaded, images), expected)
    # the full anomalib pipeline (pre-processor, model, post-processor) too
    loaded.eval()
    trained.model.eval()
    with torch.no_grad():
        ours, theirs = loaded(images), trained.model(images)
    assert torch.equal(ours.pred_score, theirs.pred_score)
    assert torch.equal(ours.pred_label, theirs.pred_label)


def test_checkpoint_loads_where_its_prompt_files_are_not(trained, test_images, tmp_path: Path) -> None:
    """A checkpoint moved away from the prompt YAML it was trained with still loads: it holds the embeddings."""
    images, _ = test_images
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["prompt_library"] = ["relative/dir/prompts.yaml"]
    moved = tmp_path / "moved.ckpt"
    torch.save(checkpoint, moved)
    loaded = PromptMAD.load_from_checkpoint(moved)
    assert torch.equal(_maps(loaded, images), _maps(trained.model, images))
    # building a model for training still reads the prompt files at once, naming the missing one
    with pytest.raises(FileNotFoundError, match="relative/dir/prompts.yaml"):
        PromptMAD(prompt_library="relative/dir/prompts.yaml", backbone="tf_efficientnet_lite0", backbone_weights="none")


@pytest.mark.slow
def test_predict_from_checkpoint_with_a_fresh_model(
    trained, test_subset, make_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engine.predict(ckpt_path=...) into an untrained model, from a bare dataloader."""
    _forbid_text_encoder(monkeypatch)
    # a plain dataloader (no datamodule, so no category names): everything comes from the checkpoint
    loader = DataLoader(test_subset, batch_size=4, collate_fn=test_subset.collate_fn)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    predictions = engine.predict(model=make_model(), dataloaders=loader, ckpt_path=trained.checkpoint)
    reference = Engine(default_root_dir=tmp_path / "reference", accelerator="cpu", devices=1, logger=False)
    expected = reference.predict(model=trained.model, dataloaders=loader)
    assert len(predictions) == len(expected) == 2
    for ours, theirs in zip(predictions, expected, strict=True):
        assert list(ours.image_path) == list(theirs.image_path)
        torch.testing.assert_close(ours.anomaly_map, theirs.anomaly_map, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.pred_score, theirs.pred_score, rtol=0, atol=1e-6)
        assert torch.equal(ours.pred_label, theirs.pred_label)
        assert ours.pred_mask is not None


@pytest.mark.slow
def test_validate_and_test_from_checkpoint(
    trained, demo_root: Path, make_model, make_datamodule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Engine.validate/test(ckpt_path=...) into an untrained model keep the checkpoint's categories."""
    _forbid_text_encoder(monkeypatch)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    model = make_model()
    (validation,) = engine.validate(model=model, datamodule=trained.datamodule, ckpt_path=trained.checkpoint)
    assert validation["val_category_accuracy"] >= 0.95
    assert model.categories == trained.model.categories
    # a datamodule with one of the categories: the model keeps the checkpoint's three (its buffers' order)
    model = make_model()
    (metrics,) = engine.test(
        model=model,
        datamodule=make_datamodule(demo_root, categories=["fabric"]),
        ckpt_path=trained.checkpoint,
    )
    assert model.categories == ["circuit", "disc", "fabric"]
    assert metrics["test_category_accuracy"] >= 0.95
    assert metrics["pixel_AUROC"] == pytest.approx(trained.test_metrics["fabric/pixel_AUROC"], abs=1e-6)
    assert metrics["image_AUROC"] == pytest.approx(trained.test_metrics["fabric/image_AUROC"], abs=1e-6)


def test_same_image_gives_the_same_map_whatever_the_batch(trained, test_images) -> None:
    """Repeated calls and other batch companions leave an image's map unchanged."""
    images, _ = test_images
    first = _maps(trained.model, images[:4])
    assert torch.equal(first, _maps(trained.model, images[:4]))
    # the same four images in other company (other categories, other batch size, reversed order)
    mixed = torch.cat([images[4:], images[:4].flip(0)])
    second = _maps(trained.model, mixed)[4:].flip(0)
    torch.testing.assert_close(second, first, rtol=0, atol=1e-6)
    single = torch.cat([_maps(trained.model, image[None]) for image in images[:4]])
    # the matching search's matrix products are blocked differently for other batch sizes: float rounding only
    torch.testing.assert_close(single, first, rtol=0, atol=1e-5)


def test_image_size_must_be_a_multiple_of_16() -> None:
    """Image sizes the token grid cannot tile are refused at construction."""
    with pytest.raises(ValueError, match="multiple of 16"):
        PromptMAD(image_size=100, backbone="tf_efficientnet_lite0", backbone_weights="none")


def test_forward_before_calibration_is_a_clear_error(make_model) -> None:
    """An untrained, uncalibrated model refuses to predict, saying why."""
    model = make_model(backbone_weights="none").eval()
    with pytest.raises(RuntimeError, match="not calibrated"):
        model.model(torch.rand(1, 3, 64, 64))


@pytest.mark.slow
def test_unknown_category_in_the_datamodule_is_a_clear_error(
    trained, demo_root: Path, make_model, make_datamodule, tmp_path: Path
) -> None:
    """Testing or predicting on a category the model was not trained on fails before any batch."""
    # "gear" is a category the model never saw (fabric images under another name)
    root = tmp_path / "other_data"
    shutil.copytree(demo_root / "disc", root / "disc")
    shutil.copytree(demo_root / "fabric", root / "gear")
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    loaded = PromptMAD.load_from_checkpoint(trained.checkpoint)
    with pytest.raises(ValueError, match=r"categories \['gear'\] that this PromptMAD model was not trained on"):
        engine.test(model=loaded, datamodule=make_datamodule(root))
    # the same with a fresh model given the checkpoint to restore
    with pytest.raises(ValueError, match="gear"):
        engine.predict(model=make_model(), datamodule=make_datamodule(root), ckpt_path=trained.checkpoint)
