# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Training-step time of the CPU-config PromptMAD in fp32, under bf16 autocast, and with ``torch.compile``.

One step = the network's training forward pass (reconstruction transformer, segmentor, diffusion training
pass; the frozen backbone's clean features come from the feature cache, as in every epoch after the first),
the losses, backward and AdamW, on a batch of 8 random 256 px images with synthetic anomalies. Step time does
not depend on the image content or the trained weights. Variants are interleaved step by step (A B A B ...)
so that load from other processes on a shared machine hits them alike; the median is reported.

Usage:
    python scripts/training_precision.py [--steps 6] [--threads 2] [--compile] [--image-size 256] [--batch 8]
        [--skip "bf16 autocast + torch.compile"]

``--compile`` adds ``torch.compile`` variants (compilation takes minutes on 2 cores and is not counted).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from anomalib_promptmad.data.synthetic import AnomalySynthesizer
from anomalib_promptmad.infrastructure.precision import cpu_supports_bf16, training_autocast
from anomalib_promptmad.losses import PromptMADLoss
from anomalib_promptmad.torch_model import PromptMADModel


def _make_step(
    model: PromptMADModel,
    forward: Callable[..., dict[str, torch.Tensor]],
    dtype: torch.dtype | None,
    batch: tuple[torch.Tensor, ...],
) -> Callable[[], float]:
    images, anomalous, masks, category = batch
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss = PromptMADLoss()
    with torch.no_grad():
        clean = model.backbone_features(images)

    def step() -> float:
        start = time.perf_counter()
        with training_autocast(dtype, "cpu"):
            outputs = forward(images, anomalous, masks, category, clean)
        outputs = outputs.float()
        terms = loss(outputs.reconstruction, outputs.target, outputs.pixel_logits, outputs.mask)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        if not torch.isfinite(terms["loss"]):
            msg = "non-finite loss"
            raise RuntimeError(msg)
        return time.perf_counter() - start

    return step


def main() -> None:
    """Measure and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder depth (CPU config: 2)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    parser.add_argument("--skip", default="", help="comma-separated variant names to leave out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size = (args.image_size, args.image_size)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, *size, generator=generator)
    anomalous, masks = AnomalySynthesizer()(images, generator)
    category = torch.arange(args.batch) % 2
    batch = (images, anomalous, masks, category)

    variants: dict[str, Callable[[], float]] = {}
    for name, dtype, compiled in (
        ("fp32", None, False),
        ("bf16 autocast", torch.bfloat16, False),
        ("fp32 + torch.compile", None, True),
        ("bf16 autocast + torch.compile", torch.bfloat16, True),
    ):
        if (compiled and not args.compile) or name in args.skip.split(","):
            continue
        torch.manual_seed(0)
        model = PromptMADModel(size, num_encoder_layers=args.layers, num_decoder_layers=args.layers, dropout=0.0)
        model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(2, 2, 384), dim=-1))
        model.train()
        forward = torch.compile(model.training_outputs) if compiled else model.training_outputs
        step = _make_step(model, forward, dtype, batch)
        start = time.perf_counter()
        try:
            step()  # warm-up (and compilation)
        except Exception as error:  # noqa: BLE001 - report a variant that does not run, keep the others
            print(f"{name}: failed ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
            continue
        print(f"{name}: warm-up step {time.perf_counter() - start:.1f} s")
        variants[name] = step

    durations: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.steps):
        for name, step in variants.items():
            durations[name].append(step())
    base = statistics.median(durations["fp32"]) if "fp32" in durations else float("nan")
    print(
        f"\nPromptMAD training step, batch {args.batch} at {args.image_size} px, {args.layers}+{args.layers} layers, "
        f"{args.threads} thread(s), CPU bf16 support: {cpu_supports_bf16()} (median of {args.steps})\n",
    )
    print("| variant | step time (s) | speed-up vs fp32 |")
    print("|---|---|---|")
    for name, values in durations.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
