# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies: Perlin masks, CutPaste and the :class:`AnomalySynthesizer` that mixes them."""

from anomalib_promptmad.data.synthetic.cutpaste import ColorJitterParams, cutpaste_patch, cutpaste_scar
from anomalib_promptmad.data.synthetic.perlin import perlin_mask, perlin_noise
from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer, TextureFolder

__all__ = [
    "AnomalySynthesizer",
    "ColorJitterParams",
    "TextureFolder",
    "cutpaste_patch",
    "cutpaste_scar",
    "perlin_mask",
    "perlin_noise",
]
