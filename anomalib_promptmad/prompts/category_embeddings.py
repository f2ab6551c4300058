# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The text embeddings of a model's categories: packaged catalogues, extended by the user's or the dataset's files.

Example:
    >>> embeddings, encoder = category_text_embeddings(["bottle", "pill"], [], "minilm")  # doctest: +SKIP
    >>> embeddings.shape  # (categories, normal/anomalous, width)  # doctest: +SKIP
    torch.Size([2, 2, 384])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from anomalib_promptmad.prompts.library import PromptLibrary, class_text_embeddings
from anomalib_promptmad.prompts.text_encoder import build_text_encoder

__all__ = ["DATASET_PROMPT_FILE", "category_text_embeddings", "dataset_prompt_file"]

logger = logging.getLogger(__name__)

# the prompt file a dataset may ship at its root (``promptmad-demo-data`` writes one)
DATASET_PROMPT_FILE = "prompts.yaml"


def dataset_prompt_file(root: str | Path | None) -> Path | None:
    """``<root>/prompts.yaml`` as an absolute path where it exists, else ``None``.

    Absolute: the path is recorded in the checkpoint, which may be read from another directory.
    """
    candidate = Path(root).absolute() / DATASET_PROMPT_FILE if isinstance(root, str | Path) else None
    if candidate is None or not candidate.is_file():
        return None
    logger.info("PromptMAD: reading the dataset's prompts from %s (no prompt_library given)", candidate)
    return candidate


def category_text_embeddings(
    categories: Sequence[str],
    prompt_files: Sequence[str],
    text_encoder: str,
) -> tuple[torch.Tensor, str]:
    """Encode the normal and anomalous prompts of every category.

    Args:
        categories: Category names in index order.
        prompt_files: Prompt YAML files extending or overriding the packaged catalogues, in order.
        text_encoder: Text encoder spec (see :func:`~anomalib_promptmad.prompts.build_text_encoder`).

    Returns:
        ``((K, 2, E) embeddings, name of the encoder actually used)``.
    """
    library = PromptLibrary.default()
    for path in prompt_files:
        library = library.with_yaml(path)
    encoder = build_text_encoder(text_encoder)
    embeddings = torch.stack([class_text_embeddings(library.prompts_for(name), encoder) for name in categories])
    logger.info("PromptMAD text prompts encoded with %s for %s", encoder.name, list(categories))
    return embeddings, encoder.name
