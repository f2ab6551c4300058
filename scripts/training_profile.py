# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Where a PromptMAD training step spends its time on CPU (the CPU-budget config by default).

Times, per training step (median of ``--steps`` steps after one warm-up step):

- data loading: decoding and resizing one batch of training images (real MVTec AD where it is beside the
  project, else generated demo images);
- anomaly synthesis (CutPaste / Perlin);
- the forward pass of each stage (frozen backbone, reconstruction transformer, segmentor, diffusion),
  measured with forward hooks;
- backward + optimiser step;

once with the clean images' backbone features computed every step (the first epoch) and once read from
the feature cache (every later epoch). It also prints the share of attention kernels in the step
(torch profiler). Step time does not depend on trained weights: the network has its real architecture
and offline backbone weights, and trains on real images.

Usage:
    python scripts/training_profile.py [--image-size 256] [--batch 8] [--steps 3] [--threads 2] [--layers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.demo import generate_demo_dataset
from anomalib_promptmad.data.mvtec import MultiClassMVTecAD
from anomalib_promptmad.data.synthetic import AnomalySynthesizer
from anomalib_promptmad.losses import PromptMADLoss
from anomalib_promptmad.torch_model import PromptMADModel

# report name -> (PromptMADModel attribute, methods timed); none of these calls another
STAGES = {
    "backbone (frozen)": ("backbone", ("forward",)),
    "reconstruction transformer": ("reconstructor", ("encode", "decode")),
    "segmentor": ("segmentor", ("forward",)),
    "diffusion (training pass)": ("diffusion", ("training_logits",)),
}
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec_ad_256"


def _datamodule(image_size: int, batch: int, scratch: Path) -> tuple[MultiClassMVTecAD, str]:
    if (REAL_DATA / "bottle" / "train").is_dir():
        root, categories, source = REAL_DATA, ["bottle", "pill"], "real MVTec AD bottle + pill"
    else:
        root = generate_demo_dataset(scratch / "demo", image_size=image_size, seed=0)
        categories, source = None, "generated demo data"
    datamodule = MultiClassMVTecAD(root=root, categories=categories, train_batch_size=batch, num_workers=0)
    datamodule.setup("fit")
    return datamodule, source


def _watch(model: PromptMADModel, times: dict[str, float]) -> None:
    """Wrap the methods of :data:`STAGES` so each adds its wall time to ``times[stage]``."""
    for name, (attribute, methods) in STAGES.items():
        module = getattr(model, attribute)
        if module is None:
            continue
        for method in methods:
            original = getattr(module, method)

            def timed(*inputs: object, original=original, name: str = name, **options: object) -> object:
                start = time.perf_counter()
                result = original(*inputs, **options)
                times[name] += time.perf_counter() - start
                return result

            # an instance attribute shadows the method, also for nn.Module.__call__ -> forward
            setattr(module, method, timed)


def main() -> None:
    """Profile and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2, help="encoder and decoder depth (CPU config: 2)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/promptmad_profile"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    datamodule, source = _datamodule(args.image_size, args.batch, args.scratch)
    categories = datamodule.categories
    loader = iter(datamodule.train_dataloader())
    size = (args.image_size, args.image_size)
    model = PromptMADModel(size, num_encoder_layers=args.layers, num_decoder_layers=args.layers, dropout=0.0)
    model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(len(categories), 2, 384), dim=-1))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    loss = PromptMADLoss()
    synthesizer = AnomalySynthesizer()
    generator = torch.Generator().manual_seed(0)
    times: dict[str, float] = defaultdict(float)
    _watch(model, times)

    def step(cached: bool) -> dict[str, float]:
        times.clear()
        start = time.perf_counter()
        batch = next(loader)
        images = torch.nn.functional.interpolate(batch.image, size=size, mode="bilinear", antialias=True)
        times["data loading"] = time.perf_counter() - start
        index = {name: position for position, name in enumerate(categories)}
        category = torch.tensor([index[category_from_path(path)] for path in batch.image_path])
        start = time.perf_counter()
        anomalous, masks = synthesizer(images, generator)
        times["anomaly synthesis"] = time.perf_counter() - start
        clean = None
        if cached:
            with torch.no_grad():
                clean = model.backbone_features(images)
            times["backbone (frozen)"] = 0.0  # reading the cache costs nothing: count the step's own passes only
        start = time.perf_counter()
        outputs = model.training_outputs(images, anomalous, masks, category, clean)
        terms = loss(outputs.reconstruction, outputs.target, outputs.pixel_logits, outputs.mask)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        times["backward + optimiser step"] = time.perf_counter() - start
        times["forward, other (tokens, prompts, loss)"] = forward - sum(
            value
            for name, value in times.items()
            if name not in {"data loading", "anomaly synthesis"} and name != "backward + optimiser step"
        )
        return dict(times)

    results = {}
    for cached in (False, True):
        runs = []
        for repeat in range(args.steps + 1):
            run = step(cached)
            if repeat:  # the first step warms up allocators and kernels
                runs.append(run)
        results[cached] = {name: statistics.median(run[name] for run in runs) for name in runs[0]}

    with torch.profiler.profile() as profiler:
        step(False)
    attention = sum(event.self_cpu_time_total for event in profiler.key_averages() if "scaled_dot_product" in event.key)
    total = sum(event.self_cpu_time_total for event in profiler.key_averages())

    print(
        f"training step, batch {args.batch} at {args.image_size} px, {args.layers}+{args.layers} layers, "
        f"{args.threads} threads, {source}\n"
    )
    print("| stage | s/step (first epoch) | share | s/step (cached features) | share |")
    print("|---|---|---|---|---|")
    first, later = results[False], results[True]
    first_total, later_total = sum(first.values()), sum(later.values())
    for name in first:
        print(
            f"| {name} | {first[name]:.2f} | {first[name] / first_total:.0%} | "
            f"{later.get(name, 0.0):.2f} | {later.get(name, 0.0) / later_total:.0%} |"
        )
    print(f"| **step** | **{first_total:.2f}** | | **{later_total:.2f}** | |")
    steps_per_epoch = -(-len(datamodule.train_data) // args.batch)
    print(
        f"\n{len(datamodule.train_data)} training images = {steps_per_epoch} steps/epoch: "
        f"{steps_per_epoch * first_total / 60:.1f} min (first epoch), {steps_per_epoch * later_total / 60:.1f} min "
        "(later epochs), before validation and calibration"
    )
    print(f"attention kernels (forward + backward): {attention / total:.0%} of the profiled step's CPU time")


if __name__ == "__main__":
    main()
