# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Token features: area-averaged fine levels, per-channel standardisation, a segmentor that reads the residual.

Also: checkpoints saved before these settings existed load with the settings they were trained with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomalib_promptmad import PromptMAD
from anomalib_promptmad.reconstruction import FeatureTokenizer
from anomalib_promptmad.segmentor import TextGuidedSegmentor

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _levels(batch: int = 2) -> list[torch.Tensor]:
    """Four random backbone levels at strides 2, 4, 8, 16 of a 64 px image."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, channels, 64 // stride, 64 // stride, generator=generator) for channels, stride in ((3, 2), (4, 4), (5, 8), (6, 16))]


def test_fine_levels_are_area_averaged_onto_the_token_grid() -> None:
    tokenizer = FeatureTokenizer([1], [2], token_stride=16, standardize=False)
    # a checkerboard at stride 2: every 8 x 8 cell averages to 0.5, whatever a point sample would pick
    checkerboard = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().view(1, 1, 32, 32)
    tokens = tokenizer([checkerboard], (4, 4))
    assert torch.allclose(tokens, torch.full_like(tokens, 0.5))
    # OneNIP's resize point-samples it: values far from the cell means (aliasing)
    legacy = FeatureTokenizer([1], [2], token_stride=16, resampling="bilinear", standardize=False)
    assert (legacy([checkerboard], (4, 4)) - 0.5).abs().max() > 0.2


def test_an_impulse_stays_in_the_token_that_covers_it() -> None:
    tokenizer = FeatureTokenizer([1], [2], token_stride=16, standardize=False)
    impulse = torch.zeros(1, 1, 32, 32)
    impulse[0, 0, 13, 21] = 64.0  # pixels 26-27 x 42-43 of the image: token (1, 2)
    tokens = tokenizer([impulse], (4, 4))[0, 0]
    assert tokens[1, 2] == pytest.approx(1.0)
    assert tokens.sum() == pytest.approx(1.0)


def test_standardised_tokens_do_not_depend_on_the_scale_of_a_level() -> None:
    levels = _levels()
    tokenizer = FeatureTokenizer([3, 4, 5, 6], [2, 4, 8, 16], token_stride=16)
    assert not tokenizer.has_statistics
    raw = tokenizer(levels, (4, 4))
    assert torch.equal(raw, tokenizer.concatenate(levels, (4, 4)))  # unfitted: passed through
    tokenizer.fit_statistics(raw)
    tokens = tokenizer(levels, (4, 4))
    flat = tokens.transpose(0, 1).flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(18), atol=1e-5)
    assert torch.allclose(flat.std(1), torch.ones(18), atol=1e-4)
    # a level 100 times larger would decide a raw L2 distance alone; standardised, nothing changes
    scaled = [level * (100.0 if index == 3 else 1.0) for index, level in enumerate(levels)]
    rescaled = FeatureTokenizer([3, 4, 5, 6], [2, 4, 8, 16], token_stride=16)
    rescaled.fit_statistics(rescaled.concatenate(scaled, (4, 4)))
    assert torch.allclose(rescaled(scaled, (4, 4)), tokens, atol=1e-4)


def test_the_segmentor_reads_the_residual_and_not_the_raw_features() -> None:
    torch.manual_seed(0)
    segmentor = TextGuidedSegmentor(8, [4, 3], text_dim=None, dim=16).eval()
    residual = torch.rand(1, 8, 4, 4)
    skips = [torch.rand(1, 4, 8, 8), torch.rand(1, 3, 16, 16)]
    with torch.no_grad():
        first = segmentor(residual, torch.rand(1, 8, 4, 4), skips, None)[1]
        other_features = segmentor(residual, torch.rand(1, 8, 4, 4), skips, None)[1]
        other_residual = segmentor(torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 4), skips, None)[1]
    assert torch.equal(first, other_features)
    assert not torch.equal(first, other_residual)
    reading = TextGuidedSegmentor(8, [4, 3], text_dim=None, dim=16, read_features=True).eval()
    with torch.no_grad():
        assert not torch.equal(
            reading(residual, torch.rand(1, 8, 4, 4), skips, None)[1],
            reading(residual, torch.rand(1, 8, 4, 4), skips, None)[1],
        )


def test_a_model_fits_its_token_statistics_before_training(trained) -> None:
    tokenizer = trained.model.model.tokenizer
    assert tokenizer.standardize
    assert tokenizer.has_statistics
    assert tokenizer.channel_mean.shape == (tokenizer.out_channels,)


def test_checkpoint_from_before_the_token_settings_loads_with_what_it_was_trained_with(
    trained,
    make_model,
    tmp_path: Path,
) -> None:
    """A checkpoint without these settings was trained with OneNIP's resize, raw tokens and a feature-reading segmentor."""
    old_settings = {"token_resampling": "bilinear", "standardize_tokens": False, "segmentor_reads_features": True}
    old_model = make_model(**old_settings, categories=trained.model.categories)
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    for key, value in old_model.model.state_dict().items():
        if not isinstance(value, torch.nn.parameter.UninitializedParameter):  # the text tokens: set by training
            state[f"model.{key}"] = value
    for key in [key for key in state if key.startswith("model.tokenizer.")]:
        del state[key]  # the old layout had no token statistics
    hyper_parameters = dict(old_model.hparams)
    for name in old_settings:
        del hyper_parameters[name]
    checkpoint["hyper_parameters"] = hyper_parameters
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    loaded = PromptMAD.load_from_checkpoint(old)
    assert loaded.model.tokenizer.resampling == "bilinear"
    assert not loaded.model.tokenizer.standardize
    assert loaded.model.segmentor is not None and loaded.model.segmentor.read_features
    assert {name: loaded.hparams[name] for name in old_settings} == old_settings
