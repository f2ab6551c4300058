# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Exported PromptMAD (torch, ONNX, OpenVINO) gives the eager model's maps from the image alone.

An ONNX export traces the whole network (about a minute on 2 cores), so the suite exports once:
``Engine.export(export_type="openvino")`` builds its ONNX file with ``model.to_onnx`` (the very call
``export_type="onnx"`` makes, with the same arguments) in a temporary folder; the fixture keeps a copy
of that file and checks it as the ONNX export.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow

# Measured: < 1e-5 for ONNX Runtime and OpenVINO (fp32) on the session's model.
MAX_ABS_DIFF = 1e-3


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Export the session's model with ``Engine.export``: ``{"torch": .pt, "onnx": .onnx, "openvino": .xml}``."""
    root = tmp_path_factory.mktemp("export")
    model = trained.model
    onnx_folder = root / "weights" / "onnx"
    to_onnx = model.to_onnx

    def to_onnx_and_keep(*args: Any, **kwargs: Any) -> Path:
        path = to_onnx(*args, **kwargs)
        # the file may come with external weights (model.onnx.data): keep the whole folder
        shutil.copytree(path.parent, onnx_folder)
        return path

    paths = {"torch": trained.engine.export(model=model, export_type="torch", export_root=root)}
    model.to_onnx = to_onnx_and_keep
    try:
        paths["openvino"] = trained.engine.export(model=model, export_type="openvino", export_root=root)
    finally:
        del model.to_onnx
    paths["onnx"] = onnx_folder / "model.onnx"
    return paths


@pytest.fixture(scope="module")
def eager(trained, test_images) -> dict[str, np.ndarray]:
    """Outputs of the eager model (pre-processor, network, post-processor) on the test images."""
    images, _ = test_images
    trained.model.eval()
    with torch.no_grad():
        outputs = trained.model(images)
    return {name: value.numpy() for name, value in outputs._asdict().items() if value is not None}


def _assert_matches(name: str, outputs: dict[str, np.ndarray], eager: dict[str, np.ndarray]) -> None:
    for field in ("anomaly_map", "pred_score"):
        difference = float(np.abs(outputs[field].reshape(eager[field].shape) - eager[field]).max())
        print(f"{name} {field} max abs diff: {difference:.2e}")  # reported with pytest -s
        assert difference < MAX_ABS_DIFF, (name, field, difference)
    # thresholded outputs may only differ where the value sits within the tolerance of the threshold
    assert np.mean(outputs["pred_label"].reshape(-1) == eager["pred_label"].reshape(-1)) == 1.0


def test_export_writes_every_format(exported) -> None:
    """Engine.export wrote the torch, ONNX and OpenVINO files."""
    for path in exported.values():
        assert path.is_file() and path.stat().st_size > 0
    assert exported["openvino"].with_suffix(".bin").is_file()


def test_torch_export_matches_eager(exported, test_images, eager, monkeypatch: pytest.MonkeyPatch) -> None:
    """The .pt file loaded by anomalib's TorchInferencer gives the eager outputs."""
    from anomalib.deploy import TorchInferencer

    images, _ = test_images
    # the .pt file is a pickle: anomalib loads it only when told that its source is trusted
    monkeypatch.setenv("TRUST_REMOTE_CODE", "1")
    inferencer = TorchInferencer(path=exported["torch"], device="cpu")
    with torch.no_grad():
        outputs = inferencer.model(images)
    _assert_matches("torch", {k: v.numpy() for k, v in outputs._asdict().items() if v is not None}, eager)


def test_onnx_export_takes_only_the_image_and_matches_eager(exported, test_images, eager) -> None:
    """ONNX Runtime: one image input, the eager outputs."""
    import onnxruntime

    images, _ = test_images
    session = onnxruntime.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert len(inputs) == 1
    assert inputs[0].type == "tensor(float)"
    assert len(inputs[0].shape) == 4 and inputs[0].shape[1] == 3
    names = [output.name for output in session.get_outputs()]
    assert {"anomaly_map", "pred_score", "pred_label", "pred_mask"} <= set(names)
    outputs = dict(zip(names, session.run(None, {inputs[0].name: images.numpy()}), strict=True))
    _assert_matches("onnx", outputs, eager)


def test_openvino_export_takes_only_the_image_and_matches_eager(exported, test_images, eager) -> None:
    """OpenVINO runtime (fp32): one image input, the eager outputs."""
    import openvino

    images, _ = test_images
    core = openvino.Core()
    network = core.read_model(exported["openvino"])
    assert len(network.inputs) == 1
    # fp32 on every CPU (some default to bf16 inference, which is an accuracy choice, not an export error)
    compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(images.numpy())
    outputs = {output.get_any_name(): results[output] for output in compiled.outputs}
    _assert_matches("openvino", outputs, eager)


def test_stock_cli_exports_a_checkpoint(trained, test_images, eager, run_command, anomalib_cli, tmp_path) -> None:
    """`anomalib export --model PromptMAD --ckpt_path ... --export_type torch` (ONNX: tested above, once)."""
    result = run_command(
        [
            *anomalib_cli,
            "export",
            "--model",
            "PromptMAD",
            "--ckpt_path",
            str(trained.checkpoint),
            "--export_type",
            "torch",
            "--export_root",
            str(tmp_path),
            "--default_root_dir",
            str(tmp_path / "results"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    exported_file = tmp_path / "weights" / "torch" / "model.pt"
    assert exported_file.is_file()
    model = torch.load(exported_file, map_location="cpu", weights_only=False)["model"].eval()
    images, _ = test_images
    with torch.no_grad():
        outputs = model(images)
    _assert_matches("cli torch", {k: v.numpy() for k, v in outputs._asdict().items() if v is not None}, eager)
