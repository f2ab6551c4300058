# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Backbone test set-up: converted weights cached once per session in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anomalib_promptmad.backbone import CACHE_ENV_VAR


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the converted-weights cache at a session folder, away from the user's ``~/.cache``."""
    root = tmp_path_factory.mktemp("promptmad_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV_VAR, str(root))
        yield root
