# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Prediction inputs get the training-time checks: a 16-bit image is refused, every bad file is named.

Training refuses 16-bit and floating-point images (anomalib's reader clips them to white); ``anomalib
predict`` and ``promptmad-infer`` used to accept them and label the white image normal. Both check every
input before the model runs, so these tests need no trained model: the refusal comes first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from deploy_support import TINY_MODEL
from PIL import Image

from anomalib_promptmad.deploy import UnreadableImageError
from anomalib_promptmad.deploy.infer import main as promptmad_infer


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


@pytest.fixture
def mixed_folder(tmp_path: Path) -> dict[str, Path]:
    """A folder with a good 8-bit image, a 16-bit image (real detail in the high bits) and a truncated PNG."""
    folder = tmp_path / "images"
    folder.mkdir()
    ramp = np.linspace(0, 255, 64 * 64, dtype=np.float64).reshape(64, 64)
    good = folder / "a_good.png"
    Image.fromarray(ramp.astype(np.uint8)).convert("RGB").save(good)
    sixteen = folder / "b_16bit.png"
    Image.fromarray((ramp * 257).astype(np.uint16)).save(sixteen)
    assert Image.open(sixteen).mode.startswith("I;16")
    truncated = folder / "c_truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    return {"folder": folder, "good": good, "16bit": sixteen, "truncated": truncated}


def test_promptmad_infer_refuses_a_16bit_image_like_training(
    mixed_folder: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit status 2; the 16-bit file and the truncated file are both named; nothing is written.

    The model file is never opened: the inputs are checked first, so a placeholder path is enough.
    """
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read")
    output = tmp_path / "out"
    status = promptmad_infer([str(model), str(mixed_folder["folder"]), "-o", str(output)])
    error = capsys.readouterr().err
    assert status == 2, error
    assert f"{mixed_folder['16bit']}: 'I;16' pixels (16-bit or floating point) are not supported" in error
    assert "Convert the file to 8-bit" in error
    assert f"cannot read image '{mixed_folder['truncated']}'" in error  # every bad file, not only the first
    assert "2 input images cannot be used" in error
    assert str(mixed_folder["good"]) not in error
    assert _files(output) == []


def test_predict_refuses_a_16bit_image_like_training(mixed_folder: dict[str, Path], tmp_path: Path) -> None:
    """Engine.predict (the `anomalib predict` path) stops with the training-time message; no overlay or CSV."""
    from anomalib.engine import Engine

    from anomalib_promptmad import PromptMAD

    (mixed_folder["truncated"]).unlink()  # the 16-bit file alone
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(UnreadableImageError, match=r"'I;16' pixels \(16-bit or floating point\) are not supported"):
        engine.predict(model=PromptMAD(**TINY_MODEL), data_path=mixed_folder["folder"])
    assert [path for path in _files(tmp_path / "results") if path.suffix in {".png", ".csv"}] == []
