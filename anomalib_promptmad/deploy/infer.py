# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``promptmad-infer``: run an exported PromptMAD model on images; write heat-map overlays and a CSV.

The model file decides the runtime: ``.pt`` -> anomalib's ``TorchInferencer`` (a pickle: needs
``--trust-remote-code`` or ``TRUST_REMOTE_CODE=1``), ``.xml`` / ``.onnx`` -> anomalib's
``OpenVINOInferencer`` (``--runtime onnxruntime`` runs an ``.onnx`` file with ONNX Runtime instead).

Nothing is written unless everything succeeds: the runtime package is checked and every image is decoded
before inference starts; overlays and the CSV are written into a temporary folder beside ``--output`` and
moved into it at the end (the CSV last). The arguments (model file, runtime, inputs, ``--trust-remote-code``)
are checked before torch or anomalib is imported, so a mistyped path fails in well under a second.

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
from typing import TYPE_CHECKING

import numpy as np

from anomalib_promptmad.deploy.backends import RUNTIME_PACKAGES, require_packages

if TYPE_CHECKING:
    from anomalib_promptmad.deploy.predictions import PredictionRow

__all__ = ["Prediction", "main", "make_predictor", "run_inference"]

# the CSV's name (deploy.predictions.PREDICTIONS_FILE_NAME; not imported here: that module imports torch)
_CSV_NAME = "predictions.csv"

# overlays are drawn at least this many pixels on their short side, so that small inputs stay legible
_MIN_OVERLAY_SIDE = 256

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
    chosen = _check_model_file(model_path, runtime)
    require_packages(RUNTIME_PACKAGES[chosen], f"running '{model_path.name}' with {chosen}")
    if chosen == "torch":
        return _torch_predictor(model_path, device)
    if chosen == "onnxruntime":
        return _onnxruntime_predictor(model_path)
    return _openvino_predictor(model_path, device)


def _check_model_file(model_path: Path, runtime: str | None) -> str:
    """The runtime for ``model_path``, after the checks that need no import of torch (see :func:`make_predictor`)."""
    if not model_path.is_file():
        msg = f"exported model not found: '{model_path}'"
        raise FileNotFoundError(msg)
    chosen = _runtime_for(model_path, runtime)
    if chosen == "torch" and os.environ.get("TRUST_REMOTE_CODE", "0").lower() not in {"1", "true"}:
        # anomalib's TorchInferencer would say the same after importing torch, and name only the variable
        msg = (
            f"'{model_path}' is a pickle: loading it can run code stored in the file. If you trust the file, pass "
            "--trust-remote-code (or set TRUST_REMOTE_CODE=1); otherwise export the model to ONNX or OpenVINO "
            "(`anomalib export --export_type onnx|openvino`), which hold no code."
        )
        raise ValueError(msg)
    return chosen


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


def _overlay(image_path: Path, anomaly_map: np.ndarray, target: Path, caption: str = "") -> None:
    """Save the image with its heat map (anomalib's colour map) blended over it, and ``caption`` above it.

    Small images are enlarged first (short side at least :data:`_MIN_OVERLAY_SIDE` pixels): a 64 px heat map
    with a caption drawn on it would be unreadable.
    """
    from anomalib.visualization.image.functional import overlay_image, visualize_anomaly_map
    from PIL import Image, ImageDraw

    with Image.open(image_path) as source:
        image = source.convert("RGB")
    scale = max(1.0, _MIN_OVERLAY_SIDE / min(image.size))
    if scale > 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    heat = visualize_anomaly_map(np.clip(anomaly_map, 0.0, 1.0).astype(np.float32), colormap=True)
    overlay = overlay_image(image, heat.resize(image.size, Image.BILINEAR), alpha=0.5).convert("RGB")
    if caption:
        band = 20
        framed = Image.new("RGB", (overlay.width, overlay.height + band), "black")
        framed.paste(overlay, (0, band))
        ImageDraw.Draw(framed).text((4, 4), caption, fill="white")
        overlay = framed
    overlay.save(target)


def _caption(score: float, label: bool, category: str) -> str:
    """``"score 0.873  anomalous  disc"``: what the CSV row says, written on the overlay."""
    return "  ".join(filter(None, [f"score {score:.3f}", "anomalous" if label else "normal", category]))


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
    model_path, inputs, output = Path(model_path), Path(inputs), Path(output)
    if not inputs.exists():
        msg = f"input image or folder not found: '{inputs}'"
        raise FileNotFoundError(msg)
    _check_model_file(model_path, runtime)  # before the imports below (torch, anomalib): seconds per mistake

    from anomalib.data.utils import get_image_filenames

    from anomalib_promptmad.deploy.predictions import PredictionRow, check_images_readable, write_predictions_csv

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
                _overlay(image_path, anomaly_map, target, _caption(score, label, category))
        write_predictions_csv(rows, staging / _CSV_NAME)
        output.mkdir(parents=True, exist_ok=True)
        # move everything in; the CSV last, so a table in `output` always describes overlays already there
        for source in sorted(staging.rglob("*"), key=lambda path: path.name == _CSV_NAME):
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
    parser.add_argument(
        "--output", "-o", type=Path, default=Path("predictions"), help="output folder (default: ./predictions)"
    )
    parser.add_argument(
        "--runtime",
        choices=["torch", "openvino", "onnxruntime"],
        help="default: by file type (.pt: torch; .xml, .onnx: openvino)",
    )
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
    previous_trust = os.environ.get("TRUST_REMOTE_CODE")
    if arguments.trust_remote_code:
        os.environ["TRUST_REMOTE_CODE"] = "1"  # what anomalib's TorchInferencer reads
    try:
        rows = run_inference(
            arguments.model,
            arguments.inputs,
            arguments.output,
            runtime=arguments.runtime,
            device=arguments.device,
            overlays=not arguments.no_overlays,
        )
    except (FileNotFoundError, ImportError, ValueError) as error:  # UnreadableImageError is a ValueError
        print(f"promptmad-infer: error: {error}", file=sys.stderr)
        return 2
    finally:
        # the trust given to this run only: main() called from Python must not leave it set for later loads
        if previous_trust is None:
            os.environ.pop("TRUST_REMOTE_CODE", None)
        else:
            os.environ["TRUST_REMOTE_CODE"] = previous_trust
    anomalous = sum(row.pred_label for row in rows)
    noun = "image" if len(rows) == 1 else "images"
    print(f"{len(rows)} {noun}, {anomalous} predicted anomalous -> {arguments.output / _CSV_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
