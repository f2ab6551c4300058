# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``promptmad-infer``: run an exported PromptMAD model on images; write heat-map overlays and a CSV.

The model file decides the runtime: ``.pt`` -> anomalib's ``TorchInferencer`` (a pickle: needs
``--trust-remote-code`` or ``TRUST_REMOTE_CODE=1``), ``.xml`` / ``.onnx`` -> anomalib's
``OpenVINOInferencer`` (``--runtime onnxruntime`` runs an ``.onnx`` file with ONNX Runtime instead).

Nothing is written unless everything succeeds: the runtime package is checked and every image is decoded
before inference starts; overlays and the CSV are written into a temporary folder beside ``--output`` and
moved into it at the end (the CSV last).

Example:
    promptmad-infer exported/weights/openvino/model.xml path/to/images --output predictions/
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from anomalib_promptmad.deploy.backends import RUNTIME_PACKAGES, require_packages
from anomalib_promptmad.deploy.predictions import (
    PREDICTIONS_FILE_NAME,
    PredictionRow,
    UnreadableImageError,
    check_images_readable,
    write_predictions_csv,
)

__all__ = ["Prediction", "main", "make_predictor", "run_inference"]

logger = logging.getLogger(__name__)

# (normalised anomaly map (H, W) in [0, 1], score, label, category or "")
Prediction = tuple[np.ndarray, float, bool, str]


def _runtime_for(model_path: Path, runtime: str | None) -> str:
    suffix = model_path.suffix.lower()
    if suffix in {".pt", ".pth"}:
        chosen, allowed = runtime or "torch", {"torch"}
    elif suffix in {".xml", ".bin"}:
        chosen, allowed = runtime or "openvino", {"openvino"}
    elif suffix == ".onnx":
        chosen, allowed = runtime or "openvino", {"openvino", "onnxruntime"}
    else:
        msg = f"unknown model file type '{model_path}': expected an exported .pt, .onnx or .xml file"
        raise ValueError(msg)
    if chosen not in allowed:
        msg = f"runtime '{chosen}' cannot run '{model_path.name}' (possible: {', '.join(sorted(allowed))})"
        raise ValueError(msg)
    return chosen


def make_predictor(
    model_path: str | Path, runtime: str | None = None, device: str = "cpu"
) -> Callable[[Path], Prediction]:
    """Load an exported model with anomalib's inferencers and return a per-image predictor.

    Args:
        model_path: Exported ``.pt``, ``.onnx`` or ``.xml`` file.
        runtime: ``"torch"``, ``"openvino"`` or ``"onnxruntime"``; ``None`` picks by file type.
        device: ``"cpu"`` (or a device of the runtime, e.g. ``"cuda"`` for torch, ``"GPU"`` for OpenVINO).

    Returns:
        A function of an image path giving ``(anomaly_map, score, label, category)``.

    Raises:
        FileNotFoundError: If ``model_path`` does not exist.
        MissingBackendError: If the runtime's package cannot be imported.
        ValueError: If the file type and runtime do not match.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        msg = f"exported model not found: '{model_path}'"
        raise FileNotFoundError(msg)
    chosen = _runtime_for(model_path, runtime)
    require_packages(RUNTIME_PACKAGES[chosen], f"running '{model_path.name}' with {chosen}")
    if chosen == "torch":
        return _torch_predictor(model_path, device)
    if chosen == "onnxruntime":
        return _onnxruntime_predictor(model_path)
    return _openvino_predictor(model_path, device)


def _torch_predictor(model_path: Path, device: str) -> Callable[[Path], Prediction]:
    import torch
    from anomalib.deploy import TorchInferencer

    from anomalib_promptmad.deploy.predictions import CategoryRecorder

    inferencer = TorchInferencer(path=model_path, device=device)
    # the .pt file holds the whole Lightning module, so the inferred category can be read out too
    recorder = CategoryRecorder(inferencer.model)

    def predict(path: Path) -> Prediction:
        with torch.no_grad():
            result = inferencer.predict(path)
        (category,) = recorder.categories(1)
        return (
            result.anomaly_map.squeeze().cpu().numpy(),
            float(result.pred_score.flatten()[0]),
            bool(result.pred_label.flatten()[0]),
            category,
        )

    return predict


def _openvino_predictor(model_path: Path, device: str) -> Callable[[Path], Prediction]:
    from anomalib.deploy import OpenVINOInferencer

    # fp32 everywhere: some CPUs default to bf16 inference, which shifts scores by more than 1e-3
    inferencer = OpenVINOInferencer(path=model_path, device=device.upper(), config={"INFERENCE_PRECISION_HINT": "f32"})

    def predict(path: Path) -> Prediction:
        result = inferencer.predict(path)
        return (
            np.asarray(result.anomaly_map).squeeze(),
            float(np.asarray(result.pred_score).flatten()[0]),
            bool(np.asarray(result.pred_label).flatten()[0]),
            "",
        )

    return predict


def _onnxruntime_predictor(model_path: Path) -> Callable[[Path], Prediction]:
    import onnxruntime
    from anomalib.data.utils import read_image

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    names = [output.name for output in session.get_outputs()]

    def predict(path: Path) -> Prediction:
        # the same pre-processing as OpenVINOInferencer: [0, 1] float, NCHW; the graph resizes
        image = np.asarray(read_image(path, as_tensor=False), dtype=np.float32).transpose(2, 0, 1)[None]
        outputs = dict(zip(names, session.run(None, {input_name: image}), strict=True))
        return (
            outputs["anomaly_map"].squeeze(),
            float(outputs["pred_score"].flatten()[0]),
            bool(outputs["pred_label"].flatten()[0]),
            "",
        )

    return predict


def _overlay(image_path: Path, anomaly_map: np.ndarray, target: Path) -> None:
    """Save the image with its heat map (anomalib's colour map, resized to the image) blended over it."""
    from anomalib.visualization.image.functional import overlay_image, visualize_anomaly_map
    from PIL import Image

    with Image.open(image_path) as source:
        image = source.convert("RGB")
    heat = visualize_anomaly_map(np.clip(anomaly_map, 0.0, 1.0).astype(np.float32), colormap=True)
    overlay_image(image, heat.resize(image.size, Image.BILINEAR), alpha=0.5).convert("RGB").save(target)


def _overlay_name(image_path: Path, root: Path) -> Path:
    """Overlay path mirroring the input's position below the input folder (names may repeat in sub-folders)."""
    relative = image_path.relative_to(root) if root.is_dir() else Path(image_path.name)
    return Path("overlays") / relative.with_suffix(".png")


def run_inference(
    model_path: str | Path,
    inputs: str | Path,
    output: str | Path,
    runtime: str | None = None,
    device: str = "cpu",
    overlays: bool = True,
) -> list[PredictionRow]:
    """Run an exported model on an image or a folder; write overlays and ``predictions.csv`` into ``output``.

    Args:
        model_path: Exported ``.pt``, ``.onnx`` or ``.xml`` file.
        inputs: An image file or a folder (searched recursively, as anomalib's ``PredictDataset`` does).
        output: Output folder; receives ``overlays/`` and ``predictions.csv``.
        runtime: See :func:`make_predictor`.
        device: See :func:`make_predictor`.
        overlays: Write heat-map overlays.

    Returns:
        The rows written to the CSV.

    Raises:
        FileNotFoundError: If the model or the inputs do not exist, or no image is found.
        UnreadableImageError: If an image cannot be decoded (nothing is written).
        MissingBackendError: If the runtime's package cannot be imported (nothing is written).
    """
    from anomalib.data.utils import get_image_filenames

    inputs, output = Path(inputs), Path(output)
    if not inputs.exists():
        msg = f"input image or folder not found: '{inputs}'"
        raise FileNotFoundError(msg)
    images = sorted(get_image_filenames(inputs))
    if not images:
        msg = f"no images found in '{inputs}'"
        raise FileNotFoundError(msg)
    check_images_readable(images)
    predict = make_predictor(model_path, runtime, device)

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        rows = []
        for image_path in images:
            anomaly_map, score, label, category = predict(image_path)
            rows.append(PredictionRow(str(image_path), score, label, category))
            if overlays:
                target = staging / _overlay_name(image_path, inputs)
                target.parent.mkdir(parents=True, exist_ok=True)
                _overlay(image_path, anomaly_map, target)
        write_predictions_csv(rows, staging / PREDICTIONS_FILE_NAME)
        output.mkdir(parents=True, exist_ok=True)
        # move everything in; the CSV last, so a table in `output` always describes overlays already there
        for source in sorted(staging.rglob("*"), key=lambda path: path.name == PREDICTIONS_FILE_NAME):
            if source.is_file():
                target = output / source.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="promptmad-infer",
        description="Run an exported PromptMAD model (.pt, .onnx or .xml) on images; write heat-map overlays "
        "and predictions.csv (image_path, pred_score, pred_label, category).",
    )
    parser.add_argument("model", type=Path, help="exported model file (.pt, .onnx, .xml)")
    parser.add_argument("inputs", type=Path, help="an image or a folder of images")
    parser.add_argument("--output", "-o", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--runtime", choices=["torch", "openvino", "onnxruntime"], help="default: by file type")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda (torch), GPU (OpenVINO), ...")
    parser.add_argument("--no-overlays", action="store_true", help="write the CSV only")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow loading a .pt export (a pickle, which can run code: only for files you trust)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``promptmad-infer``.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        Exit status: 0 on success, 2 on a usage or input error (message on stderr).
    """
    arguments = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if arguments.trust_remote_code:
        os.environ["TRUST_REMOTE_CODE"] = "1"
    try:
        rows = run_inference(
            arguments.model,
            arguments.inputs,
            arguments.output,
            runtime=arguments.runtime,
            device=arguments.device,
            overlays=not arguments.no_overlays,
        )
    except (FileNotFoundError, UnreadableImageError, ImportError, ValueError) as error:
        print(f"promptmad-infer: error: {error}", file=sys.stderr)
        return 2
    anomalous = sum(row.pred_label for row in rows)
    print(f"{len(rows)} images, {anomalous} predicted anomalous -> {arguments.output / PREDICTIONS_FILE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
