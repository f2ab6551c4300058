# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The tiny PromptMAD every end-to-end test trains: seconds per epoch on 2 CPU cores.

Tiny but complete: every stage of the method (text prompts, segmentor, diffusion) is present. Test folders
add their own ``image_size`` and ``max_epochs``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TINY_MODEL"]

TINY_MODEL: dict[str, Any] = {
    "backbone": "tf_efficientnet_lite0",
    "backbone_weights": "packaged",
    "text_encoder": "minilm",
    "hidden_dim": 32,
    "num_heads": 4,
    "num_encoder_layers": 1,
    "num_decoder_layers": 1,
    "dim_feedforward": 64,
    "segmentor_dim": 32,
    "diffusion_steps": 3,
    "learning_rate": 1e-3,
    "calibration_images": 8,
}
