# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Throughput of PromptMAD on CPU: eager torch vs its ONNX (ONNX Runtime) and OpenVINO exports.

The model has the CPU config's architecture (``configs/promptmad_cpu.yaml``: 256 px, EfficientNet-Lite2,
2 + 2 transformer layers, 10 diffusion steps, 2 categories). Speed does not depend on trained weights, so
the heads are random and the calibration buffers are set from random images; the backbone has its real
offline weights. What is timed is the whole exported graph: resize, network, post-processing.

Each runtime uses ``--threads`` threads; each batch size is warmed up, then run ``--repeats`` times.

Usage:
    python scripts/export_throughput.py [--threads 2] [--repeats 10] [--image-size 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from anomalib_promptmad.infrastructure.timing import calls_per_second

__all__ = ["build_model", "main"]

CPU_CONFIG = {
    "backbone": "tf_efficientnet_lite2",
    "text_encoder": "minilm",
    "hidden_dim": 256,
    "num_heads": 8,
    "num_encoder_layers": 2,
    "num_decoder_layers": 2,
    "dim_feedforward": 1024,
    "dropout": 0.0,
    "diffusion_steps": 10,
}
CATEGORIES = ["bottle", "pill"]


def build_model(image_size: int):
    """A calibrated PromptMAD (CPU-config architecture, random heads), in eval mode."""
    import torch

    from anomalib_promptmad import PromptMAD
    from anomalib_promptmad.fusion_rule import FusionRule

    torch.manual_seed(0)
    model = PromptMAD(image_size=image_size, categories=CATEGORIES, **CPU_CONFIG).eval()
    network, count = model.model, len(CATEGORIES)
    # 384 = the packaged MiniLM encoder's width (the CPU config's text encoder)
    network.set_text_embeddings(torch.nn.functional.normalize(torch.randn(count, 2, 384), dim=-1))
    network.set_prototypes(torch.randn(count, network.tokenizer.out_channels))
    network.set_prompt_images(torch.rand(count, 3, image_size, image_size))
    network.set_map_scale(torch.ones(count))
    network.set_fusion_rules([FusionRule()] * count)
    network.set_thresholds(torch.ones(count), torch.ones(count))
    return model


def main() -> None:
    """Export once, then print a Markdown table of images/s per runtime and batch size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    import onnxruntime
    import openvino
    import torch

    torch.set_num_threads(args.threads)
    model = build_model(args.image_size)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        onnx_path = model.to_onnx(Path(folder))  # dynamic batch and size, as `anomalib export` writes it
        export_seconds = time.perf_counter() - start
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        core = openvino.Core()
        # the conversion anomalib's to_openvino makes from the same ONNX file (fp32 weights)
        compiled = core.compile_model(
            openvino.convert_model(onnx_path),
            "CPU",
            {"INFERENCE_NUM_THREADS": args.threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        )

    input_name = session.get_inputs()[0].name

    def eager(images: np.ndarray) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(images))

    runtimes: dict[str, Callable[[np.ndarray], object]] = {
        "eager torch": eager,
        "ONNX Runtime": lambda images: session.run(None, {input_name: images}),
        "OpenVINO": lambda images: compiled(images),
    }
    rng = np.random.default_rng(0)
    results = {name: {} for name in runtimes}
    for batch_size in (1, 8):
        batch = rng.random((batch_size, 3, args.image_size, args.image_size), dtype=np.float32)
        for name, run in runtimes.items():
            rate = calls_per_second(lambda: run(batch), min_iterations=args.repeats, min_seconds=0)  # noqa: B023
            results[name][batch_size] = rate * batch_size

    print(
        f"PromptMAD, CPU config ({args.image_size} px, Lite2, 2+2 layers, 10 diffusion steps), "
        f"{args.threads} threads, {args.repeats} timed runs after warm-up; ONNX export took {export_seconds:.0f} s\n"
    )
    print("| runtime | images/s (batch 1) | images/s (batch 8) |")
    print("|---|---|---|")
    for name, by_batch in results.items():
        print(f"| {name} | {by_batch[1]:.2f} | {by_batch[8]:.2f} |")


if __name__ == "__main__":
    main()
