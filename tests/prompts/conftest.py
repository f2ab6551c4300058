# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fixtures shared by the prompt tests: the packaged encoder (built once) and the default library."""

from __future__ import annotations

import pytest

from anomalib_promptmad.prompts import PromptLibrary, TextEncoder, build_text_encoder


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    """The packaged MiniLM sentence encoder (offline, memoised per process)."""
    return build_text_encoder("minilm")


@pytest.fixture(scope="session")
def library() -> PromptLibrary:
    """The packaged MVTec AD + VisA prompt library."""
    return PromptLibrary.default()
