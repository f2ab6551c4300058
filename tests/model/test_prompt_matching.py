# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Prompt retrieval and prompt matching inside the model: nearest candidates, and a model never trained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow


def _calibrated_network(make_model, candidates: torch.Tensor, valid: torch.Tensor | None = None):
    """A tiny network with one category whose candidate prompts are ``candidates`` ``(1, M, 3, H, W)``."""
    network = make_model(categories=["only"], retrieved_prompts=2).model.eval()
    network.set_text_embeddings(torch.nn.functional.normalize(torch.randn(1, 2, 384), dim=-1))
    _, features = network.extract(candidates[0])
    network.set_prototypes(features.mean(dim=(0, 2, 3))[None])
    network.set_prompt_images(candidates, valid)
    return network


def test_retrieval_picks_the_nearest_candidate_and_never_padding(make_model) -> None:
    generator = torch.Generator().manual_seed(0)
    # three clearly different normal images: a dark, a bright and a striped one
    dark = torch.rand(3, 64, 64, generator=generator) * 0.2
    bright = 0.8 + torch.rand(3, 64, 64, generator=generator) * 0.2
    striped = torch.zeros(3, 64, 64)
    striped[:, :, ::8] = 1.0
    network = _calibrated_network(make_model, torch.stack([dark, bright, striped])[None])
    for index, image in enumerate((dark, bright, striped)):
        query = (image + 0.02 * torch.rand(3, 64, 64, generator=generator)).clamp(0, 1)[None]
        _, features = network.extract(query)
        chosen = network.retrieve_prompts(features, torch.zeros(1, dtype=torch.long))
        assert chosen.shape == (1, 2)
        assert int(chosen[0, 0]) == index
    # the third candidate is padding: the striped query must get one of the two real ones
    padded = _calibrated_network(make_model, torch.stack([dark, bright, striped])[None], torch.tensor([[1, 1, 0]]))
    _, features = padded.extract(striped[None])
    assert 2 not in padded.retrieve_prompts(features, torch.zeros(1, dtype=torch.long)).flatten().tolist()


def test_a_model_never_trained_localises_with_prompt_matching(demo_root: Path, make_datamodule, make_model, tmp_path) -> None:
    """``max_epochs=0``: calibration alone (banks, scales, fusion on validation) gives a working detector."""
    from anomalib.engine import Engine

    datamodule = make_datamodule(demo_root)
    model = make_model(max_epochs=0, prompt_library=str(demo_root / "prompts.yaml"))
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False)
    engine.fit(model=model, datamodule=datamodule)
    assert model.model.is_calibrated is False  # nothing trained, nothing calibrated yet
    (metrics,) = engine.test(model=model, datamodule=datamodule)
    assert model.model.is_calibrated
    assert any(rule.matching_weight > 0 for rule in model.model.fusion_rules)  # validation chose to use M
    assert metrics["mean/pixel_AUROC"] > 0.65, metrics  # measured 0.79 (M: disc 0.97, fabric 0.97, circuit 0.43)
    assert metrics["test_category_accuracy"] >= 0.95


def test_zero_epochs_need_prompt_matching(make_model) -> None:
    with pytest.raises(ValueError, match="use_prompt_matching"):
        make_model(max_epochs=0, use_prompt_matching=False)
