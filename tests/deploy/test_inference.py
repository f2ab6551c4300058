# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Inference on new images: ``predict`` on a folder, ``promptmad-infer`` with anomalib's inferencers."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_support import REPO_ROOT, Deployment

from anomalib_promptmad.deploy import PREDICTIONS_FILE_NAME
from anomalib_promptmad.deploy.infer import main as promptmad_infer

pytestmark = pytest.mark.slow


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def reference(deployment: Deployment, eager_model) -> dict[str, tuple[float, bool, str]]:
    """Eager score, label and inferred category of every session image, by file name."""
    from anomalib.data.utils import read_image

    results = {}
    for path in sorted(deployment.images.glob("*.png")):
        image = read_image(path, as_tensor=True).unsqueeze(0)
        with torch.no_grad():
            outputs = eager_model(image)
            _, features = eager_model.model.extract(eager_model.pre_processor.transform(image))
            category = eager_model.categories[int(eager_model.model.classify(features)[0])]
        results[path.name] = (float(outputs.pred_score[0]), bool(outputs.pred_label[0]), category)
    return results


def _check_rows(rows: list[dict[str, str]], reference: dict, with_category: bool) -> None:
    assert sorted(Path(row["image_path"]).name for row in rows) == sorted(reference)
    for row in rows:
        score, label, category = reference[Path(row["image_path"]).name]
        assert abs(float(row["pred_score"]) - score) < 1e-3, (row, score)
        assert bool(int(row["pred_label"])) == label
        assert row["category"] == (category if with_category else "")


def test_engine_predict_on_a_folder_writes_overlays_and_the_csv(deployment: Deployment, reference, tmp_path) -> None:
    """`anomalib predict --model PromptMAD --ckpt_path ... --data <folder>` (its Engine.predict call).

    The model is built with the *default* settings, as the command line builds it: the network follows
    the checkpoint's architecture.
    """
    from anomalib.engine import Engine

    from anomalib_promptmad import PromptMAD

    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    engine.predict(model=PromptMAD(text_encoder="minilm"), data_path=deployment.images, ckpt_path=deployment.checkpoint)
    root = Path(engine.trainer.default_root_dir)
    _check_rows(_read_csv(root / PREDICTIONS_FILE_NAME), reference, with_category=True)
    overlays = sorted((root / "images").rglob("*.png"))
    assert sorted(path.name for path in overlays) == sorted(reference)


def test_predict_says_where_its_outputs_went(deployment: Deployment, tmp_path, caplog) -> None:
    """The CSV's path is logged; a second run into the same folder is warned that overlays will mix."""
    import logging

    from anomalib.engine import Engine

    from anomalib_promptmad import PromptMAD

    def predict() -> Path:
        engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
        with caplog.at_level(logging.INFO, logger="anomalib_promptmad.deploy.predictions"):
            engine.predict(
                model=PromptMAD(text_encoder="minilm"), data_path=deployment.images, ckpt_path=deployment.checkpoint
            )
        return Path(engine.trainer.default_root_dir)

    root = predict()
    count = len(list(deployment.images.glob("*.png")))
    assert f"{count} images" in caplog.text
    assert f"-> {(root / PREDICTIONS_FILE_NAME).resolve()}" in caplog.text
    assert "of an earlier run" not in caplog.text
    caplog.clear()
    assert predict() == root  # anomalib reuses the folder ...
    assert f"{root / 'images'} already holds" in caplog.text  # ... and the user is told, with the option to set
    assert "--default_root_dir" in caplog.text


@pytest.mark.parametrize(
    ("kind", "options", "with_category"),
    [
        ("torch", ["--trust-remote-code"], True),
        ("openvino", [], False),
        ("onnx", ["--runtime", "onnxruntime"], False),
    ],
)
def test_promptmad_infer_runs_each_export(
    deployment: Deployment, reference, tmp_path, kind: str, options: list[str], with_category: bool, monkeypatch
) -> None:
    """`promptmad-infer <export> <folder>` with TorchInferencer / OpenVINOInferencer / ONNX Runtime."""
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer creates ./openvino_cache
    monkeypatch.delenv("TRUST_REMOTE_CODE", raising=False)
    output = tmp_path / "out"
    status = promptmad_infer([str(deployment.exports[kind]), str(deployment.images), "--output", str(output), *options])
    assert status == 0
    assert "TRUST_REMOTE_CODE" not in os.environ  # --trust-remote-code trusted that run only
    _check_rows(_read_csv(output / PREDICTIONS_FILE_NAME), reference, with_category)
    overlays = sorted((output / "overlays").glob("*.png"))
    assert sorted(path.name for path in overlays) == sorted(reference)
    from PIL import Image

    with Image.open(overlays[0]) as overlay, Image.open(deployment.images / overlays[0].name) as source:
        # small inputs are enlarged to a legible size (short side 256), with a caption band of 20 px on top
        scale = max(1.0, 256 / min(source.size))
        width, height = round(source.width * scale), round(source.height * scale)
        assert overlay.size == (width, height + 20)
        # a heat map was blended in: the overlay differs from the (enlarged) input image
        heat = np.asarray(overlay.convert("RGB").crop((0, 20, width, height + 20)), float)
        plain = np.asarray(source.convert("RGB").resize((width, height), Image.BILINEAR), float)
        assert np.abs(heat - plain).mean() > 1


def test_torch_export_needs_explicit_trust(deployment: Deployment, tmp_path, monkeypatch, capsys) -> None:
    """A .pt export is a pickle: without --trust-remote-code it is refused, and nothing is written."""
    monkeypatch.delenv("TRUST_REMOTE_CODE", raising=False)
    status = promptmad_infer([str(deployment.exports["torch"]), str(deployment.images), "-o", str(tmp_path / "o")])
    assert status == 2
    assert "TRUST_REMOTE_CODE" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert [path.name for path in tmp_path.iterdir()] == []


def test_argument_errors_come_before_torch_is_imported(tmp_path) -> None:
    """A missing model file, a .pt without --trust-remote-code: the error, without importing torch (seconds)."""
    from deploy_support import run

    (tmp_path / "images").mkdir()
    (tmp_path / "model.pt").write_bytes(b"never unpickled")
    probe = (
        "import sys; from anomalib_promptmad.deploy.infer import main; "
        "codes = [main([sys.argv[1], sys.argv[2]]), main([sys.argv[3], sys.argv[2]])]; "
        "print(codes, 'torch' in sys.modules)"
    )
    result = run(
        [sys.executable, "-c", probe, str(tmp_path / "missing.onnx"), str(tmp_path / "images"),
         str(tmp_path / "model.pt")],
        cwd=tmp_path,
        TRUST_REMOTE_CODE="0",
    )  # fmt: skip
    assert result.stdout.strip() == "[2, 2] False", result.stdout + result.stderr[-2000:]
    assert "exported model not found" in result.stderr
    assert "pass --trust-remote-code" in result.stderr
    assert not (tmp_path / "predictions").exists()


def test_console_script_is_declared() -> None:
    """The project declares `promptmad-infer` -> the main() tested here."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with (REPO_ROOT / "pyproject.toml").open("rb") as stream:
        scripts = tomllib.load(stream)["project"]["scripts"]
    assert scripts["promptmad-infer"] == "anomalib_promptmad.deploy.infer:main"


def test_promptmad_infer_as_a_command(deployment: Deployment, tmp_path) -> None:
    """The module runs as a command in a fresh process (what the console script calls)."""
    from deploy_support import run

    result = run(
        [sys.executable, "-m", "anomalib_promptmad.deploy.infer", str(deployment.exports["openvino"]),
         str(deployment.images), "-o", str(tmp_path / "out"), "--no-overlays"],
        cwd=tmp_path,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "predicted anomalous" in result.stdout
    assert len(_read_csv(tmp_path / "out" / PREDICTIONS_FILE_NAME)) == len(list(deployment.images.glob("*.png")))
    assert not (tmp_path / "out" / "overlays").exists()
