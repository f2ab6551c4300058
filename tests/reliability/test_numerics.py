# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Numerical safety and determinism of inference: NaN losses, mixed precision, repeatable maps."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from anomalib_promptmad import MultiClassMVTecAD, PromptMAD
from anomalib_promptmad.infrastructure.training_guards import NonFiniteLossError


def _engine(root: Path, **kwargs: Any) -> Any:  # noqa: ANN401
    from anomalib.engine import Engine

    return Engine(default_root_dir=root, accelerator="cpu", devices=1, logger=False, **kwargs)


def _datamodule(root: Path) -> MultiClassMVTecAD:
    return MultiClassMVTecAD(root=root, train_batch_size=4, eval_batch_size=8, num_workers=0)


def _calibrated_model_and_test_batch(demo_root: Path, model_settings: dict[str, Any]) -> tuple[Any, Any, torch.Tensor]:
    """An untrained tiny PromptMAD calibrated on the demo data, a test batch and its pre-processed images."""
    model = PromptMAD(**{**model_settings, "categories": ["disc", "fabric"]})
    datamodule = _datamodule(demo_root)
    datamodule.setup("fit")
    model.model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(2, 2, 384), dim=-1))
    model.calibrate(datamodule.train_data)
    batch = next(iter(datamodule.test_dataloader()))
    return model, batch, model.pre_processor.transform(batch.image)


def test_nan_loss_stops_training_before_a_broken_checkpoint(
    demo_root: Path, model_settings: dict[str, Any], tmp_path: Path
) -> None:
    """A NaN in the second epoch raises naming the term, the step and the fixes; the saved checkpoint stays finite."""
    model = PromptMAD(**{**model_settings, "max_epochs": 3})
    real_loss = model.loss.forward

    def poisoned(*args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # noqa: ANN401
        terms = real_loss(*args, **kwargs)
        if model.current_epoch == 1:  # e.g. an exploding learning rate
            terms = {**terms, "focal": terms["focal"] * float("nan"), "loss": terms["loss"] * float("nan")}
        return terms

    model.loss.forward = poisoned
    engine = _engine(tmp_path)
    with pytest.raises(
        NonFiniteLossError, match=r"epoch 1, global step \d+: \{'focal': nan, 'loss': nan\}.*learning_rate"
    ):
        engine.fit(model=model, datamodule=_datamodule(demo_root))
    (last,) = tmp_path.rglob("last.ckpt")
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0  # written after epoch 0; nothing written from the poisoned epoch
    # trained parameters only: buffers such as the attention mask hold -inf by design
    parameters = {name for name, _ in model.named_parameters()}
    assert parameters
    assert all(torch.isfinite(checkpoint["state_dict"][name]).all() for name in parameters)
    assert not list(last.parent.glob(".*.tmp"))  # the atomic writer's temporary files


@pytest.mark.parametrize("precision", ["16-true", "bf16-true"])
def test_pure_half_precision_is_refused_before_training(
    demo_root: Path, model_settings: dict[str, Any], tmp_path: Path, precision: str
) -> None:
    """Pure half precision fails in setup with the reason and the supported alternatives."""
    model = PromptMAD(**{**model_settings, "max_epochs": 1})
    with pytest.raises(ValueError, match=rf"precision='{precision}'.*bf16-mixed"):
        _engine(tmp_path, precision=precision).fit(model=model, datamodule=_datamodule(demo_root))
    assert not list(tmp_path.rglob("*.ckpt"))


def test_bf16_mixed_precision_trains_and_tests(demo_root: Path, model_settings: dict[str, Any], tmp_path: Path) -> None:
    """bf16 autocast (CPU; the same path as GPUs) trains and tests to finite metrics."""
    model = PromptMAD(**{**model_settings, "max_epochs": 1})
    engine = _engine(tmp_path, precision="bf16-mixed")
    datamodule = _datamodule(demo_root)
    engine.fit(model=model, datamodule=datamodule)
    (metrics,) = engine.test(model=model, datamodule=datamodule)
    for name in ("image_AUROC", "pixel_AUROC", "pixel_AUPR"):
        assert math.isfinite(metrics[name]), name


def test_fp16_autocast_keeps_losses_and_maps_finite(demo_root: Path, model_settings: dict[str, Any]) -> None:
    """fp16 autocast (what '16-mixed' runs on a GPU; CPU autocast here) keeps losses and maps finite and close.

    Lightning turns '16-mixed' on CPU into bf16, so fp16 numerics are checked with torch.autocast directly.
    """
    model, batch, images = _calibrated_model_and_test_batch(demo_root, model_settings)
    category = model.category_indices(batch.image_path)
    model.model.eval()
    with torch.no_grad():
        reference = model.model(images).anomaly_map
        with torch.autocast("cpu", dtype=torch.float16):
            half = model.model(images).anomaly_map.float()
    assert torch.isfinite(half).all()
    assert torch.allclose(half, reference, atol=0.05), (half - reference).abs().max()
    model.model.train()
    generator = torch.Generator().manual_seed(0)
    anomalous, masks = model.training_inputs.synthesizer(images, generator)
    with torch.autocast("cpu", dtype=torch.float16):
        outputs = model.model.training_outputs(images, anomalous, masks, category)
        terms = model.loss(outputs.reconstruction, outputs.target, outputs.pixel_logits, outputs.mask)
    assert all(torch.isfinite(value).all() for value in terms.values()), terms
    terms["loss"].backward()


def test_inference_gives_the_same_map_every_time(demo_root: Path, model_settings: dict[str, Any]) -> None:
    """Same image, same map: no random prompt at test time, dropout off, across calls and batch positions."""
    model, _, images = _calibrated_model_and_test_batch(demo_root, model_settings)
    model.model.eval()
    with torch.no_grad():
        first = model.model(images)
        torch.manual_seed(123)  # global random state must not matter
        second = model.model(images)
        reversed_batch = model.model(images.flip(0))
    assert torch.equal(first.anomaly_map, second.anomaly_map)
    assert torch.equal(first.pred_score, second.pred_score)
    assert torch.allclose(reversed_batch.anomaly_map.flip(0), first.anomaly_map, atol=1e-5)
