# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Diffusion-style iterative refinement of anomaly-map logits (PromptMAD: 10 steps, linear betas).

The mask ``x0 = 2 m - 1`` is the diffused variable. A small convolutional denoiser, conditioned on the
segmentor's stride-4 features, its coarse logits, the timestep and the class text tokens (FiLM),
predicts ``x0`` (as logits) from ``x_t``. Training draws one timestep per sample and noises the true
synthetic mask. Inference runs deterministic DDIM (``eta = 0``) from ``x_T = sqrt(abar_T) * x0_coarse``
(the noise term's mean, zero), so maps are reproducible and the loop unrolls into a static exported graph.

The paper gives the step count and "linear beta schedule" only. With 10 steps, DDPM's 1000-step range
(1e-4 .. 0.02) would leave ``abar_T`` at 0.9 (almost no noise), so the default range is 1e-3 .. 0.5,
which ends at ``abar_T`` of about 0.03, close to pure noise, as a diffusion process should.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DiffusionRefinement", "linear_beta_schedule"]


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
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int = 16,
        steps: int = 10,
        beta_start: float = 1e-3,
        beta_end: float = 0.5,
        text_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.steps = steps
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
        abar = self.alphas_cumprod[timestep].view(batch, 1, 1, 1)
        clean = 2 * mask - 1
        noisy = abar.sqrt() * clean + (1 - abar).sqrt() * torch.randn_like(clean)
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
        state = abar[-1].sqrt() * torch.tanh(coarse_logits / 2)
        logits = coarse_logits
        for step in range(self.steps - 1, -1, -1):
            logits = self.denoise(state, self.time_embedding.weight[step : step + 1], condition, coarse_logits, text)
            if step == 0:
                break
            clean = torch.tanh(logits / 2)
            noise = (state - abar[step].sqrt() * clean) / (1 - abar[step]).sqrt()
            state = abar[step - 1].sqrt() * clean + (1 - abar[step - 1]).sqrt() * noise
        return logits
