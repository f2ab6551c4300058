# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD's text-guided segmentor.

Multi-scale convolutional features (the reconstruction residual at stride 16, the backbone's stride-8 and
stride-4 maps on the way up) are fused with Transformer spatial attention whose tokens also cross-attend to
the class text tokens ``[normal, anomalous]``. The output is a stride-4 feature map (the conditioning of the
diffusion refinement) and coarse anomaly logits.

The residual ``|reconstruction - features|`` is the segmentor's evidence at stride 16: what the prompt could
not explain. Given the query features as well (``read_features=True``, the first design), a segmentor trained
on synthetic defects can learn to spot the synthetic artefacts themselves (pasted edges, blended textures) in
the raw appearance instead of reading the residual, and such a detector does not transfer to real defects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from anomalib_promptmad.prompts.text_attention import TextCrossAttention

__all__ = ["SpatialTextAttention", "TextGuidedSegmentor"]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _separable_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 channel mixing + depthwise 3x3 spatial mixing: a 3x3 receptive field at ~1/8 of a full 3x3's cost."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=out_channels, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SpatialTextAttention(nn.Module):
    """Pre-norm block: spatial self-attention, cross-attention to text tokens, FFN.

    A depthwise 3x3 convolution gives tokens their position (works at any grid size).

    Args:
        dim: Channel width.
        num_heads: Attention heads.
        text_dim: Width of the text tokens, or ``None`` to skip text cross-attention.
    """

    def __init__(self, dim: int, num_heads: int, text_dim: int | None) -> None:
        super().__init__()
        self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.text_attn = TextCrossAttention(dim, text_dim) if text_dim else None
        self.norm_text = nn.LayerNorm(dim) if text_dim else None
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, features: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        """Attend.

        Args:
            features: ``(B, C, h, w)``.
            text: ``(B, T, text_dim)`` or ``None``.

        Returns:
            ``(B, C, h, w)``.
        """
        b, c, h, w = features.shape
        features = features + self.position(features)
        tokens = features.flatten(2).transpose(1, 2)
        normed = self.norm_self(tokens)
        tokens = tokens + self.self_attn(normed, normed, normed, need_weights=False)[0]
        if self.text_attn is not None and self.norm_text is not None and text is not None:
            tokens = tokens + self.text_attn(self.norm_text(tokens), text)
        tokens = tokens + self.ffn(self.norm_ffn(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class TextGuidedSegmentor(nn.Module):
    """Residual (and optionally query features) at stride 16 -> stride-4 features and coarse anomaly logits.

    Args:
        feature_channels: Channels of the stride-16 feature map (and of the residual).
        skip_channels: Channels of the backbone maps used on the way up, at strides 8 and 4.
        text_dim: Width of text tokens, or ``None`` when text prompts are off.
        dim: Width at stride 16.
        num_heads: Attention heads.
        decoder_channels: Widths at stride 8 and stride 4.
        read_features: Also read the query features at stride 16 (beside the residual).
    """

    def __init__(
        self,
        feature_channels: int,
        skip_channels: Sequence[int],
        text_dim: int | None,
        dim: int = 128,
        num_heads: int = 4,
        decoder_channels: Sequence[int] = (64, 32),
        read_features: bool = False,
    ) -> None:
        super().__init__()
        if len(skip_channels) != 2 or len(decoder_channels) != 2:
            msg = "the segmentor needs exactly two skip levels (strides 8 and 4) and two decoder widths"
            raise ValueError(msg)
        self.read_features = read_features
        self.fuse = _conv_bn_relu((2 if read_features else 1) * feature_channels, dim, 1)
        self.attention = SpatialTextAttention(dim, num_heads, text_dim)
        self.up8 = nn.ConvTranspose2d(dim, decoder_channels[0], 2, stride=2)
        self.block8 = _separable_block(decoder_channels[0] + skip_channels[0], decoder_channels[0])
        self.up4 = nn.ConvTranspose2d(decoder_channels[0], decoder_channels[1], 2, stride=2)
        self.block4 = _separable_block(decoder_channels[1] + skip_channels[1], decoder_channels[1])
        self.head = nn.Conv2d(decoder_channels[1], 1, 1)
        self.out_channels = decoder_channels[1]

    def forward(
        self,
        residual: torch.Tensor,
        features: torch.Tensor,
        skips: Sequence[torch.Tensor],
        text: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Segment.

        Args:
            residual: ``(B, C, h, w)`` ``|reconstruction - features|``.
            features: ``(B, C, h, w)`` query features (read only with ``read_features``).
            skips: Backbone maps ``(B, c8, ~2h, ~2w)`` and ``(B, c4, ~4h, ~4w)``; resized if needed.
            text: ``(B, T, text_dim)`` text tokens or ``None``.

        Returns:
            ``(features, logits)``: ``(B, out_channels, 4h, 4w)`` and ``(B, 1, 4h, 4w)``.
        """
        evidence = torch.cat([residual, features], dim=1) if self.read_features else residual
        x = self.attention(self.fuse(evidence), text)
        x = self.up8(x)
        x = self.block8(torch.cat([x, _match(skips[0], x)], dim=1))
        x = self.up4(x)
        x = self.block4(torch.cat([x, _match(skips[1], x)], dim=1))
        return x, self.head(x)


def _match(skip: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    if skip.shape[-2:] == reference.shape[-2:]:
        return skip
    return F.interpolate(skip, size=reference.shape[-2:], mode="bilinear", align_corners=False)
