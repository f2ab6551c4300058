# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Prompt matching: the normal image prompts used directly, as a training-free memory of normal patches.

``patch_embedding`` (Patchcore-style locally aggregated features) -> ``coreset`` (greedy k-center
subsampling, anomalib's rule) -> ``patch_bank`` (per-category buffers searched for the nearest normal patch).
"""

from anomalib_promptmad.matching.coreset import greedy_coreset_indices
from anomalib_promptmad.matching.patch_bank import PatchBank
from anomalib_promptmad.matching.patch_embedding import PatchEmbedding

__all__ = ["PatchBank", "PatchEmbedding", "greedy_coreset_indices"]
