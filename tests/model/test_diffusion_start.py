# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The diffusion refinement starts inference from the state it was trained on at ``t = T``."""

from __future__ import annotations

import torch

from anomalib_promptmad.segmentor import DiffusionRefinement


def _first_state(diffusion: DiffusionRefinement, coarse: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """The ``x_t`` the denoiser receives at the first inference step."""
    states: list[torch.Tensor] = []
    original = diffusion.denoise

    def spy(noisy: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        states.append(noisy)
        return original(noisy, *args)

    diffusion.denoise = spy  # type: ignore[method-assign]
    diffusion(coarse, condition, None)
    return states[0]


def test_inference_start_state_has_the_training_statistics_at_t_equals_T() -> None:
    torch.manual_seed(0)
    diffusion = DiffusionRefinement(4, steps=10).eval()
    mask = (torch.rand(2, 1, 64, 64) < 0.1).float()
    # confident coarse logits: tanh(logits / 2) = 2 m - 1 up to 1e-4, so both states share x0
    coarse = 20.0 * (2 * mask - 1)
    start = _first_state(diffusion, coarse, torch.randn(2, 4, 64, 64))
    last = torch.full((2,), diffusion.steps - 1, dtype=torch.long)
    trained = diffusion.noisy_state(mask, last, torch.randn_like(mask))
    assert abs(float(start.mean() - trained.mean())) < 0.05
    assert abs(float(start.std() / trained.std()) - 1) < 0.05
    # and the noise part is standard normal: sqrt(1 - abar_T) * eps around the scaled estimate
    abar = diffusion.alphas_cumprod[-1]
    residual = (start - abar.sqrt() * torch.tanh(coarse / 2)) / (1 - abar).sqrt()
    assert abs(float(residual.mean())) < 0.05
    assert abs(float(residual.std()) - 1) < 0.05


def test_inference_is_deterministic_and_the_noise_comes_from_the_seed() -> None:
    torch.manual_seed(0)
    coarse, condition = torch.randn(2, 1, 16, 16), torch.randn(2, 4, 16, 16)
    diffusion = DiffusionRefinement(4, steps=10).eval()
    torch.nn.init.normal_(diffusion.time_embedding.weight, std=0.5)
    first = diffusion(coarse, condition, None)
    torch.manual_seed(123)  # the global random state plays no part
    assert torch.equal(first, diffusion(coarse, condition, None))
    same_seed = DiffusionRefinement(4, steps=10, noise_seed=0)
    other_seed = DiffusionRefinement(4, steps=10, noise_seed=1)
    assert torch.equal(same_seed.initial_state(coarse), diffusion.initial_state(coarse))
    assert not torch.allclose(other_seed.initial_state(coarse), diffusion.initial_state(coarse))
    # the buffer is not saved: checkpoints from before it existed load strictly
    assert "start_noise" not in diffusion.state_dict()


def test_start_noise_covers_maps_larger_than_its_buffer() -> None:
    diffusion = DiffusionRefinement(4, steps=3).eval()
    side = diffusion.start_noise.shape[-1]
    noise = diffusion.fixed_noise(side + 40, 2 * side + 1)
    assert noise.shape == (1, 1, side + 40, 2 * side + 1)
    assert torch.equal(noise[..., :side, :side], diffusion.start_noise[0:1, 0:1])
    out = diffusion(torch.randn(1, 1, side + 8, 12), torch.randn(1, 4, side + 8, 12), None)
    assert out.shape == (1, 1, side + 8, 12)


def test_refinement_exports_with_torch_export() -> None:
    torch.manual_seed(0)
    diffusion = DiffusionRefinement(4, steps=4).eval()
    coarse, condition = torch.randn(1, 1, 16, 16), torch.randn(1, 4, 16, 16)
    exported = torch.export.export(diffusion, (coarse, condition, None))
    torch.testing.assert_close(exported.module()(coarse, condition, None), diffusion(coarse, condition, None))
