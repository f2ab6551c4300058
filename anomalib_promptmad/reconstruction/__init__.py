# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Reconstruction with one normal image prompt (OneNIP), optionally guided by text tokens.

Data flow: backbone features -> :class:`FeatureTokenizer` (stride-16 tokens) -> shared
:class:`TransformerEncoder` over query and prompt tokens (neighbour mask, feature jitter) ->
:class:`TwoWayDecoder` between the prompt stream (fused with text tokens) and the query stream ->
reconstructed normal features of the query.
"""

from .decoder import TwoWayDecoder, TwoWayDecoderLayer
from .encoder import TransformerEncoder, TransformerEncoderLayer
from .feature_jitter import feature_jitter
from .neighbour_mask import neighbour_mask
from .reconstructor import PromptReconstructor
from .tokens import FeatureTokenizer, LearnedPositionEmbedding

__all__ = [
    "FeatureTokenizer",
    "LearnedPositionEmbedding",
    "PromptReconstructor",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TwoWayDecoder",
    "TwoWayDecoderLayer",
    "feature_jitter",
    "neighbour_mask",
]
