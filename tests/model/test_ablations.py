# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Each ablation switch removes its stage, and every variant still trains and predicts (no Engine)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

import anomalib_promptmad.prompts.category_embeddings as category_embeddings
from anomalib_promptmad.segmentor import DiffusionRefinement, ResidualRefiner, TextGuidedSegmentor

# a name part "text" (text_tokens, prompt_to_text, norm_text, ...), not "texture"
TEXT_NAME = re.compile(r"(^|[._])text([._]|$)")

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no_text_prompts": {"use_text_prompts": False},
    "no_segmentor": {"use_segmentor": False, "diffusion_steps": 0},
    "no_diffusion": {"diffusion_steps": 0},
    "no_focal": {"focal_weight": 0.0},
}


@pytest.fixture(scope="module")
def demo_data(demo_root: Path, make_datamodule) -> Any:
    """The demo datamodule, set up (train and test splits loaded)."""
    datamodule = make_datamodule(demo_root)
    datamodule.setup()
    return datamodule


def _train_step_and_predict(model: Any, datamodule: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One optimisation step on a training batch, calibration, then a forward pass on test images.

    Returns:
        ``(training outputs, loss terms)`` of the step.
    """
    model.categories = list(datamodule.categories)
    if model.model.text_tokens is not None:
        # random unit embeddings: the structure is under test here, not the text encoder
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.nn.functional.normalize(torch.randn(3, 2, 384, generator=generator), dim=-1)
        model.model.set_text_embeddings(embeddings)
    batch = next(iter(datamodule.train_dataloader()))
    category = model.category_indices(batch.image_path)
    anomalous, masks = model.training_inputs.synthesizer(batch.image, torch.Generator().manual_seed(0))
    model.train()
    outputs = model.model.training_outputs(batch.image, anomalous, masks, category)
    terms = model.loss(outputs.reconstruction, outputs.target, outputs.pixel_logits, outputs.mask)
    trainable = [parameter for parameter in model.model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in trainable if p.grad is not None)
    assert sum(int(p.grad is not None and p.grad.abs().sum() > 0) for p in trainable) > len(trainable) // 2
    optimizer.step()

    # four normal training images per category are enough to fit the buffers
    train_data = datamodule.train_data
    per_category = train_data.samples.groupby("category", sort=True).head(4).index.tolist()
    model.calibrate(dataset=train_data.subsample(per_category))
    assert model.model.is_calibrated
    model.eval()
    images = torch.stack([datamodule.test_data[index].image for index in range(4)])
    with torch.no_grad():
        predictions = model.model(images)
    assert predictions.anomaly_map.shape == (4, 1, 64, 64)
    assert predictions.pred_score.shape == (4,)
    for values in (predictions.anomaly_map, predictions.pred_score):
        assert torch.isfinite(values).all()
        assert values.min() >= 0
        assert values.max() < 1
    return outputs, terms


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_and_predicts(variant: str, make_model, demo_data) -> None:
    """Each switch removes exactly its stage; the variant still trains one step, calibrates and predicts."""
    model = make_model(backbone_weights="none", **VARIANTS[variant])
    outputs, terms = _train_step_and_predict(model, demo_data)
    state = model.state_dict()
    network = model.model
    if variant == "no_text_prompts":
        assert network.text_tokens is None
        named = [name for name, _ in model.named_parameters()] + list(state)
        assert not [name for name in named if TEXT_NAME.search(name)]
    else:
        assert any(TEXT_NAME.search(name) for name in state)
    if variant == "no_segmentor":
        assert isinstance(network.refiner, ResidualRefiner)
        assert network.segmentor is None
        assert network.diffusion is None
        assert not [name for name in state if ".segmentor." in name or ".diffusion." in name]
        assert outputs.refined_logits is None
    else:
        assert network.refiner is None
        assert isinstance(network.segmentor, TextGuidedSegmentor)
    if variant in {"no_segmentor", "no_diffusion"}:
        assert network.diffusion is None
        assert not [name for name in state if ".diffusion." in name]
        assert outputs.refined_logits is None
    else:
        assert isinstance(network.diffusion, DiffusionRefinement)
        assert outputs.refined_logits is not None
    # the focal term is still reported, but only counts towards the total where its weight is not 0
    assert terms["focal"] > 0
    without_focal = terms["reconstruction"] + 0.5 * terms["dice"]
    if variant == "no_focal":
        torch.testing.assert_close(terms["loss"], without_focal, rtol=0, atol=0)
    else:
        torch.testing.assert_close(terms["loss"], without_focal + terms["focal"])


def test_without_text_prompts_no_text_encoder_is_built(make_model, monkeypatch: pytest.MonkeyPatch) -> None:
    """use_text_prompts=False never builds a text encoder in setup."""
    def refuse(*args: object, **kwargs: object) -> None:
        msg = "use_text_prompts=False must not build a text encoder"
        raise AssertionError(msg)

    monkeypatch.setattr(category_embeddings, "build_text_encoder", refuse)
    model = make_model(backbone_weights="none", use_text_prompts=False, categories=["disc", "fabric"])
    model.setup("fit")


def test_diffusion_without_segmentor_is_a_clear_error(make_model) -> None:
    """Diffusion refines the segmentor's logits: asking for it without the segmentor fails early."""
    with pytest.raises(ValueError, match="use_segmentor=True or diffusion_steps=0"):
        make_model(backbone_weights="none", use_segmentor=False)
