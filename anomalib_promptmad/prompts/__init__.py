# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Text side of PromptMAD: per-category prompt sentences and the encoders that embed them.

Example:
    >>> from anomalib_promptmad.prompts import PromptLibrary, build_text_encoder, class_text_embeddings
    >>> prompts = PromptLibrary.default().prompts_for("bottle")
    >>> class_text_embeddings(prompts, build_text_encoder("minilm")).shape  # doctest: +SKIP
    torch.Size([2, 384])
"""

from anomalib_promptmad.prompts.library import (
    DEFAULT_ANOMALOUS_STATES,
    DEFAULT_NORMAL_STATES,
    DEFAULT_TEMPLATES,
    PACKAGED_CATALOGS,
    ClassPrompts,
    PromptCatalogError,
    PromptLibrary,
    class_text_embeddings,
    compose_class_prompts,
)
from anomalib_promptmad.prompts.text_encoder import (
    OpenCLIPTextEncoder,
    PackagedSentenceEncoder,
    TextEncoder,
    build_text_encoder,
    clear_text_encoder_cache,
)
from anomalib_promptmad.prompts.text_tokens import TextTokens

__all__ = [
    "DEFAULT_ANOMALOUS_STATES",
    "DEFAULT_NORMAL_STATES",
    "DEFAULT_TEMPLATES",
    "PACKAGED_CATALOGS",
    "ClassPrompts",
    "OpenCLIPTextEncoder",
    "PackagedSentenceEncoder",
    "PromptCatalogError",
    "PromptLibrary",
    "TextEncoder",
    "TextTokens",
    "build_text_encoder",
    "class_text_embeddings",
    "clear_text_encoder_cache",
    "compose_class_prompts",
]
