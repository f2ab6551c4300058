# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Synthetic anomalies: defect families, their placement on the object, and the :class:`AnomalySynthesizer`."""

from anomalib_promptmad.data.synthetic.color_shift import color_shift
from anomalib_promptmad.data.synthetic.cutpaste import ColorJitterParams, cutpaste_patch, cutpaste_scar
from anomalib_promptmad.data.synthetic.families import (
    FAMILY_NAMES,
    OBJECT_ONLY_FAMILIES,
    OPT_IN_FAMILIES,
    TRAINING_FAMILIES,
    VALIDATION_FAMILIES,
    resolve_family_weights,
)
from anomalib_promptmad.data.synthetic.foreground import category_foregrounds, estimate_foreground, foreground_batch
from anomalib_promptmad.data.synthetic.foreign import foreign_texture
from anomalib_promptmad.data.synthetic.parts import misplaced_part, missing_part
from anomalib_promptmad.data.synthetic.perlin import perlin_mask, perlin_noise
from anomalib_promptmad.data.synthetic.placement import DEFAULT_CHANGE_THRESHOLD, label_changes
from anomalib_promptmad.data.synthetic.scratches import scratches
from anomalib_promptmad.data.synthetic.spots import spots
from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer, SynthesisResult, TextureFolder

__all__ = [
    "DEFAULT_CHANGE_THRESHOLD",
    "FAMILY_NAMES",
    "OBJECT_ONLY_FAMILIES",
    "OPT_IN_FAMILIES",
    "TRAINING_FAMILIES",
    "VALIDATION_FAMILIES",
    "AnomalySynthesizer",
    "ColorJitterParams",
    "SynthesisResult",
    "TextureFolder",
    "category_foregrounds",
    "color_shift",
    "cutpaste_patch",
    "cutpaste_scar",
    "estimate_foreground",
    "foreground_batch",
    "foreign_texture",
    "label_changes",
    "misplaced_part",
    "missing_part",
    "perlin_mask",
    "perlin_noise",
    "resolve_family_weights",
    "scratches",
    "spots",
]
