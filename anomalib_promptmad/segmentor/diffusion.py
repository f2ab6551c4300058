# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Diffusion-style iterative refinement of anomaly-map logits (PromptMAD: 10 steps, linear betas).

The mask ``x0 = 2 m - 1`` is the diffused variable. A small convolutional denoiser, conditioned on the
segmentor's stride-4 features, its coarse logits, the timestep and the class text tokens (FiLM),
predicts ``x0`` (as logits) from ``x_t``. Training draws one timestep per sample and noises the true
synthetic mask. Inference runs deterministic DDIM (``eta = 0``) from
``x_T = sqrt(abar_T) * x0_coarse + sqrt(1 - abar_T) * eps_fixed``: the state the denoiser saw in training at
``t = T`` (with the coarse estimate in place of the unknown mask). ``eps_fixed`` is a standard-normal field
drawn once from ``noise_seed`` (a non-persistent buffer, regenerated identically at construction, tiled for
maps larger than it), so maps are reproducible, no random number is drawn in ``forward`` and the loop unrolls
into a static exported graph. Starting from the noise-free ``sqrt(abar_T) * x0_coarse`` instead (|x| <= 0.2
where training states have a std of about 1) would feed the denoiser a state it never saw.

The paper gives the step count and "linear beta schedule" only. With 10 steps, DDPM's 1000-step range
(1e-4 .. 0.02) would leave ``abar_T`` at 0.9 (almost no noise), so the default range is 1e-3 .. 0.5,
which ends at ``abar_T`` of about 0.03, close to pure noise, as a diffusion process should.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DiffusionRefinement", "linear_beta_schedule"]

# Side of the fixed start-noise field: the stride-4 map of a 512 px image; larger maps tile it.
_NOISE_SIDE = 128


def linear_beta_schedule(steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """``steps`` betas spaced linearly from ``beta_start`` to ``beta_end`` (float64 for stable products)."""
    if steps < 1:
        msg = f"diffusion steps must be >= 1, got {steps}"
        raise ValueError(msg)
    if not 0 < beta_start <= beta_end < 1:
        msg = f"diffusion betas must satisfy 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}"
        raise ValueError(msg)
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


class DiffusionRefinement(nn.Module):
    """Iteratively refine coarse anomaly logits.

    Args:
        channels: Width of the conditioning features (the segmentor's stride-4 map).
        hidden_channels: Width of the denoiser (every step runs at this width).
        steps: Number of diffusion steps ``T``.
        beta_start: First beta of the linear schedule.
        beta_end: Last beta of the linear schedule.
        text_dim: Width of the text tokens, or ``None`` without text conditioning.
        noise_seed: Seed of the fixed noise ``eps`` of the inference start state ``x_T``. Defaults to ``0``.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int = 16,
        steps: int = 10,
        beta_start: float = 1e-3,
        beta_end: float = 0.5,
        text_dim: int | None = None,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        self.steps = steps
        self.noise_seed = noise_seed
        # non-persistent: rebuilt from the seed, so checkpoints stay small and old checkpoints still load
        start_noise = torch.randn(1, 1, _NOISE_SIDE, _NOISE_SIDE, generator=torch.Generator().manual_seed(noise_seed))
        self.register_buffer("start_noise", start_noise, persistent=False)
        self.start_noise: torch.Tensor
        alphas_cumprod = torch.cumprod(1.0 - linear_beta_schedule(steps, beta_start, beta_end), dim=0)
        self.register_buffer("alphas_cumprod", alphas_cumprod.float(), persistent=False)
        self.alphas_cumprod: torch.Tensor
        self.time_embedding = nn.Embedding(steps, 2 * hidden_channels)
        self.text_film = nn.Linear(2 * text_dim, 2 * hidden_channels) if text_dim else None
        # the conditioning is the same at every step: it is projected once per image, and each step only
        # pays for the cheap state projection and a depthwise-separable mixer
        self.condition_proj = nn.Conv2d(channels, hidden_channels, 3, padding=1)
        self.state_proj = nn.Conv2d(2, hidden_channels, 3, padding=1)
        self.mixer = nn.Sequential(
            nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1, groups=hidden_channels),
            nn.Conv2d(hidden_channels, hidden_channels, 1),
        )
        self.conv_out = nn.Conv2d(hidden_channels, 1, 1)
        self.activation = nn.SiLU()
        nn.init.zeros_(self.time_embedding.weight)

    def denoise(
        self,
        noisy: torch.Tensor,
        timestep_embedding: torch.Tensor,
        condition: torch.Tensor,
        coarse_logits: torch.Tensor,
        text: torch.Tensor | None,
    ) -> torch.Tensor:
        """Predict clean-mask logits.

        Args:
            noisy: ``(B, 1, H, W)`` ``x_t``.
            timestep_embedding: ``(B, 2 hidden)`` or ``(1, 2 hidden)`` rows of :attr:`time_embedding`.
            condition: ``(B, hidden, H, W)`` projected conditioning (:attr:`condition_proj` of the segmentor features).
            coarse_logits: ``(B, 1, H, W)`` segmentor logits.
            text: ``(B, T=2, D)`` text tokens or ``None``.

        Returns:
            ``(B, 1, H, W)`` logits of the clean mask.
        """
        film = timestep_embedding
        if self.text_film is not None and text is not None:
            film = film + self.text_film(text.flatten(1))
        scale, shift = film.unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        hidden = condition + self.state_proj(torch.cat([noisy, coarse_logits], dim=1))
        hidden = self.activation(hidden * (1 + scale) + shift)
        hidden = self.activation(self.mixer(hidden)) + hidden
        return self.conv_out(hidden) + coarse_logits

    def fixed_noise(self, height: int, width: int) -> torch.Tensor:
        """The fixed standard-normal field ``(1, 1, height, width)`` (the buffer, tiled and cropped).

        Shapes are Python integers at export (static input size), so the tiling is plain graph code.
        """
        side = self.start_noise.shape[-1]
        noise = self.start_noise
        if height > side or width > side:
            noise = noise.repeat(1, 1, -(-height // side), -(-width // side))
        return noise[..., :height, :width]

    def initial_state(self, coarse_logits: torch.Tensor) -> torch.Tensor:
        """Inference start ``x_T = sqrt(abar_T) tanh(logits / 2) + sqrt(1 - abar_T) eps_fixed``.

        Args:
            coarse_logits: ``(B, 1, H, W)`` segmentor logits (their ``tanh(. / 2)`` estimates ``2 m - 1``).

        Returns:
            ``(B, 1, H, W)`` start state, distributed as the training state at ``t = T`` around that estimate.
        """
        abar = self.alphas_cumprod[-1]
        noise = self.fixed_noise(coarse_logits.shape[-2], coarse_logits.shape[-1]).to(coarse_logits.dtype)
        return abar.sqrt() * torch.tanh(coarse_logits / 2) + (1 - abar).sqrt() * noise

    def noisy_state(self, mask: torch.Tensor, timestep: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Training state ``x_t = sqrt(abar_t) (2 m - 1) + sqrt(1 - abar_t) eps``.

        Args:
            mask: ``(B, 1, H, W)`` target mask in [0, 1].
            timestep: ``(B,)`` integer timesteps in ``[0, steps)``.
            noise: ``(B, 1, H, W)`` standard-normal ``eps``.

        Returns:
            ``(B, 1, H, W)`` noisy state.
        """
        abar = self.alphas_cumprod[timestep].view(-1, 1, 1, 1)
        return abar.sqrt() * (2 * mask - 1) + (1 - abar).sqrt() * noise

    def training_logits(
        self,
        mask: torch.Tensor,
        condition: torch.Tensor,
        coarse_logits: torch.Tensor,
        text: torch.Tensor | None,
    ) -> torch.Tensor:
        """One denoising prediction at a random timestep per sample (training).

        Args:
            mask: ``(B, 1, H, W)`` target mask in [0, 1] at the conditioning resolution.
            condition: ``(B, C, H, W)`` segmentor features.
            coarse_logits: ``(B, 1, H, W)`` segmentor logits.
            text: ``(B, 2, D)`` text tokens or ``None``.

        Returns:
            ``(B, 1, H, W)`` predicted clean-mask logits.
        """
        batch = mask.shape[0]
        timestep = torch.randint(0, self.steps, (batch,), device=mask.device)
        noisy = self.noisy_state(mask, timestep, torch.randn_like(mask))
        return self.denoise(noisy, self.time_embedding(timestep), self.condition_proj(condition), coarse_logits, text)

    def forward(self, coarse_logits: torch.Tensor, condition: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """Deterministic DDIM refinement.

        Args:
            coarse_logits: ``(B, 1, H, W)`` segmentor logits.
            condition: ``(B, C, H, W)`` segmentor features.
            text: ``(B, 2, D)`` text tokens or ``None``.

        Returns:
            ``(B, 1, H, W)`` refined logits.
        """
        abar = self.alphas_cumprod
        condition = self.condition_proj(condition)
        state = self.initial_state(coarse_logits)
        logits = coarse_logits
        for step in range(self.steps - 1, -1, -1):
            logits = self.denoise(state, self.time_embedding.weight[step : step + 1], condition, coarse_logits, text)
            if step == 0:
                break
            clean = torch.tanh(logits / 2)
            noise = (state - abar[step].sqrt() * clean) / (1 - abar[step]).sqrt()
            state = abar[step - 1].sqrt() * clean + (1 - abar[step - 1]).sqrt() * noise
        return logits
