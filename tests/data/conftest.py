# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fixtures of the data tests: a tiny two-category demo dataset in the MVTec layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_promptmad.data.demo import generate_demo_dataset

# Tests read these through the ``demo_spec`` fixture (test folders are not packages).
DEMO_CATEGORIES = ("disc", "fabric")
DEMO_COUNTS = {"n_train": 8, "n_test_good": 3, "n_test_defect": 2}


@pytest.fixture(scope="session")
def demo_spec() -> dict:
    """What ``demo_root`` holds: categories, per-category counts and test images per category."""
    return {
        "categories": list(DEMO_CATEGORIES),
        **DEMO_COUNTS,
        "n_test": DEMO_COUNTS["n_test_good"] + 2 * DEMO_COUNTS["n_test_defect"],
    }


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two demo categories at 64 x 64 (8 train, 3 good + 2 x 2 defective test images each). Read-only."""
    return generate_demo_dataset(
        tmp_path_factory.mktemp("demo") / "demo_data",
        categories=DEMO_CATEGORIES,
        image_size=64,
        **DEMO_COUNTS,
    )
