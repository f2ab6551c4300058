# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The quick-start notebook runs top to bottom (fast settings) under nbclient, so it cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from deploy_support import REPO_ROOT

pytestmark = pytest.mark.slow

NOTEBOOK = REPO_ROOT / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs; the OpenVINO cell's parity assertion and the folder-scoring cell hold."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")

    # the kernel inherits this environment: fast settings, outputs in tmp_path, one thread, this checkout
    monkeypatch.setenv("PROMPTMAD_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("PROMPTMAD_NOTEBOOK_DIR", str(tmp_path / "outputs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell

    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "OpenVINO score" in text and "difference" in text
    assert "normal:" in text and "anomalous:" in text  # the text prompts of each category were shown
    assert (tmp_path / "outputs" / "predictions" / "predictions.csv").is_file()
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # heat maps of the test images, overlays of the new images
