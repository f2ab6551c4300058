# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Exports made from a checkpoint (stock CLI and ``Engine.export``) give the eager model's maps and scores."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from deploy_support import IMAGE_SIZE, Deployment, run

pytestmark = pytest.mark.slow

# Measured on the session model: ~1e-6 (maps) and ~1e-7 (scores) for ONNX Runtime and OpenVINO fp32.
MAX_ABS_DIFF = 1e-3
FIELDS = ("anomaly_map", "pred_score")


def _images(deployment: Deployment) -> torch.Tensor:
    """The session's test images at their stored size (64 px), as one batch in [0, 1]."""
    from anomalib.data.utils import read_image

    paths = sorted(deployment.images.glob("*.png"))
    return torch.stack([read_image(path, as_tensor=True) for path in paths])


def _eager(model, images: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = model(images)
    return {name: value.numpy() for name, value in outputs._asdict().items() if value is not None}


def _onnxruntime(path, images: torch.Tensor) -> dict[str, np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: images.numpy()}), strict=True))


def _openvino(path, images: torch.Tensor) -> dict[str, np.ndarray]:
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    results = compiled(images.numpy())
    return {output.get_any_name(): results[output] for output in compiled.outputs}


def _max_diffs(outputs: dict[str, np.ndarray], eager: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        field: float(np.abs(np.asarray(outputs[field]).reshape(eager[field].shape) - eager[field]).max())
        for field in FIELDS
    }


def test_stock_cli_exports_openvino_from_a_checkpoint(deployment: Deployment) -> None:
    """`anomalib export --model PromptMAD --export_type openvino --ckpt_path ...` succeeds and writes the IR."""
    result = deployment.cli_export
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    xml = deployment.exports["openvino"]
    assert xml.is_file() and xml.with_suffix(".bin").stat().st_size > 0
    # no failed opset down-conversion and its traceback among the log lines of a successful export
    output = result.stdout + result.stderr
    assert "Failed to convert the model to the target version" not in output
    assert "No Adapter" not in output


def test_engine_exports_torch_and_onnx_from_a_checkpoint(deployment: Deployment) -> None:
    """Engine.export(ckpt_path=...) wrote a .pt and an .onnx file with a single image input."""
    import onnx

    assert deployment.exports["torch"].suffix == ".pt" and deployment.exports["torch"].stat().st_size > 0
    graph = onnx.load(str(deployment.exports["onnx"]), load_external_data=False).graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [tensor for tensor in graph.input if tensor.name not in initializers]
    assert len(inputs) == 1 and inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {"anomaly_map", "pred_score", "pred_label", "pred_mask"} <= {output.name for output in graph.output}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "openvino"])
def test_parity_at_the_trained_size(deployment: Deployment, eager_model, runtime: str, monkeypatch) -> None:
    """Every export reproduces the eager maps and scores (< 1e-3) and labels on real test images."""
    images = _images(deployment)
    assert images.shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE)
    eager = _eager(eager_model, images)
    if runtime == "torch":
        from anomalib.deploy import TorchInferencer

        monkeypatch.setenv("TRUST_REMOTE_CODE", "1")  # the .pt file is a pickle
        outputs = _eager(TorchInferencer(path=deployment.exports["torch"], device="cpu").model, images)
    elif runtime == "onnxruntime":
        outputs = _onnxruntime(deployment.exports["onnx"], images)
    else:
        outputs = _openvino(deployment.exports["openvino"], images)
    differences = _max_diffs(outputs, eager)
    print(f"{runtime} max abs diff at {IMAGE_SIZE} px: {differences}")  # reported with pytest -s
    assert max(differences.values()) < MAX_ABS_DIFF, differences
    assert np.array_equal(np.asarray(outputs["pred_label"]).reshape(-1), eager["pred_label"].reshape(-1))


@pytest.mark.parametrize("size", [(96, 80), (40, 56), (128, 128)])
def test_exported_graphs_take_other_input_sizes(deployment: Deployment, eager_model, size) -> None:
    """Any H x W is accepted: the graph resizes to the trained size first, as the eager model does.

    The maps therefore come back at the trained size; the network itself only runs at the trained size.
    """
    images = torch.nn.functional.interpolate(_images(deployment)[:3], size=size, mode="bilinear", antialias=True)
    eager = _eager(eager_model, images)
    assert eager["anomaly_map"].shape[-2:] == (IMAGE_SIZE, IMAGE_SIZE)
    for name, outputs in (
        ("onnxruntime", _onnxruntime(deployment.exports["onnx"], images)),
        ("openvino", _openvino(deployment.exports["openvino"], images)),
    ):
        differences = _max_diffs(outputs, eager)
        print(f"{name} max abs diff at {size}: {differences}")
        assert max(differences.values()) < MAX_ABS_DIFF, (name, size, differences)


def test_the_network_itself_runs_at_the_trained_size_only(eager_model) -> None:
    """Position embeddings, neighbour mask and stored prompts are fixed to the trained token grid."""
    with torch.no_grad():
        assert eager_model.model(torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)).anomaly_map.shape[-1] == IMAGE_SIZE
        with pytest.raises(RuntimeError):
            eager_model.model(torch.rand(1, 3, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE))


def test_onnx_runs_without_torch_text_encoders_or_network(deployment: Deployment, eager_model, tmp_path) -> None:
    """ONNX Runtime scores images in a process where torch, the text encoders and sockets are unavailable."""
    images = _images(deployment)[:4]
    np.save(tmp_path / "images.npy", images.numpy())
    script = textwrap.dedent(
        f"""
        import socket, sys
        # (the package's start-up registration hook, standard library only, may already be loaded)
        BLOCKED = ("torch", "anomalib", "anomalib_promptmad", "open_clip", "transformers", "sentence_transformers")
        STARTUP = {{
                "anomalib_promptmad",
                "anomalib_promptmad.infrastructure",
                "anomalib_promptmad.infrastructure.lazy_exports",
                "anomalib_promptmad.infrastructure.registration",
            }}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked: {{name}}")

        sys.meta_path.insert(0, Block())
        def no_network(*args, **kwargs):
            raise OSError("network blocked")
        socket.socket.connect = no_network
        socket.create_connection = no_network

        import numpy as np, onnxruntime
        session = onnxruntime.InferenceSession({str(deployment.exports["onnx"])!r}, providers=["CPUExecutionProvider"])
        assert len(session.get_inputs()) == 1
        names = [output.name for output in session.get_outputs()]
        feed = {{session.get_inputs()[0].name: np.load({str(tmp_path / "images.npy")!r})}}
        outputs = dict(zip(names, session.run(None, feed)))
        np.save({str(tmp_path / "scores.npy")!r}, outputs["pred_score"])
        loaded = [m for m in sys.modules if m.split(".")[0] in BLOCKED and m not in STARTUP]
        assert not loaded, loaded
        """
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    scores = np.load(tmp_path / "scores.npy")
    assert np.abs(scores - _eager(eager_model, images)["pred_score"]).max() < MAX_ABS_DIFF
