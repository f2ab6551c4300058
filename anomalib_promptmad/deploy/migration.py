# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Load checkpoints saved by earlier versions: their state takes the form the current network expects.

Each step fills in what a checkpoint of its time lacks with the behaviour that model was trained and
calibrated with, so an old checkpoint gives the same maps as before: network settings added since
(:func:`settings_missing_from`, applied before the network is built) and buffers added or reshaped since
(:func:`migrate_checkpoint`, applied to the saved state).
"""

from __future__ import annotations

from typing import Any

import torch

from anomalib_promptmad.torch_model import PromptMADModel

__all__ = ["SETTINGS_OF_OLDER_CHECKPOINTS", "migrate_checkpoint", "settings_missing_from"]

# Network settings added after checkpoints were first written, with the value those older checkpoints were trained
# with: a checkpoint whose hyper-parameters lack one is rebuilt with this value, not with today's default.
SETTINGS_OF_OLDER_CHECKPOINTS: dict[str, Any] = {
    "token_resampling": "bilinear",
    "standardize_tokens": False,
    "segmentor_reads_features": True,
}


def settings_missing_from(saved: dict[str, Any]) -> dict[str, Any]:
    """The settings a checkpoint saved before they existed was trained with (those its ``saved`` lacks)."""
    return {name: value for name, value in SETTINGS_OF_OLDER_CHECKPOINTS.items() if name not in saved}


def migrate_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Bring a Lightning checkpoint's ``state_dict`` of an earlier PromptMAD up to date, in place.

    Args:
        checkpoint: The checkpoint as Lightning loaded it (``state_dict``, ``hyper_parameters``, ...).
    """
    state = checkpoint.get("state_dict") or {}
    for old, new in (("fusion_weight", "fusion_segmentation_weight"), ("fusion_matching", "fusion_matching_weight")):
        if f"model.{old}" in state:  # saved before the rules' weights had one name everywhere
            state[f"model.{new}"] = state.pop(f"model.{old}")
    if "model.map_scale" in state and "model.fusion_segmentation_weight" not in state:
        # saved before per-category fusion rules existed: those models fused with the fixed weighted sum
        count = state["model.map_scale"].numel()
        weight = float(checkpoint.get("hyper_parameters", {}).get("segmentation_weight", 0.5))
        state["model.fusion_segmentation_weight"] = torch.full((count,), weight)
        state["model.fusion_product"] = torch.zeros(count)
    if "model.fusion_segmentation_weight" in state and "model.fusion_matching_weight" not in state:
        state["model.fusion_matching_weight"] = torch.zeros_like(state["model.fusion_segmentation_weight"])
    if "model.fusion_product" in state and "model.fusion_geometric" not in state:
        # saved before geometric-mean rules existed: every rule was a sum or the product
        state["model.fusion_geometric"] = torch.zeros_like(state["model.fusion_product"])
    if "model.map_scale" in state and "model.image_threshold" not in state:
        # saved before per-category thresholds: those models' outputs were the unscaled fused maps
        count = state["model.map_scale"].numel()
        state["model.image_threshold"] = torch.ones(count)
        state["model.pixel_threshold"] = torch.ones(count)
    # saved with anomalib's 2-D Gaussian kernel of M's smoothing: the separable blur recomputes its kernel from sigma
    state.pop("model.anomaly_map.matching_blur.kernel", None)
    prompts = state.get("model.prompt_features")
    if prompts is not None and prompts.ndim == 4:  # noqa: PLR2004 - (K, C, h, w): one prompt per category
        # saved before prompt retrieval: one fixed prompt per category, i.e. a single candidate each
        state["model.prompt_features"] = prompts.unsqueeze(1)
        state["model.prompt_memory"] = state["model.prompt_memory"].unsqueeze(1)
        state["model.prompt_descriptors"] = PromptMADModel.descriptor(prompts).unsqueeze(1)
        state["model.prompt_valid"] = torch.ones(prompts.shape[0], 1)
