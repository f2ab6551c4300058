# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Inference throughput and peak memory of PromptMAD vs the same network in OneNIP mode, and anomalib's Padim (CPU).

OneNIP mode = text prompts, segmentor and diffusion off (OneNIP's refiner instead). The prompt-matching mode
adds ``M`` with a bank the size of a 1 % coreset of 210 training images per category (2150 patches). Throughput does not
depend on trained weights, so the networks are built with their real architecture and offline backbone
weights, calibrated on random images, and timed on random images. Padim is anomalib's, configured as the
benchmark configures it (same Lite2 backbone, blocks 1/2/4, 100 features), with its Gaussian set from random
images. Each mode runs in its own process so that peak memory (max RSS) is its own.

Usage:
    python scripts/inference_speed.py [--image-size 256] [--repeats 5] [--threads 2] [--layers 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

MODES = {
    "PromptMAD (full)": {},
    "OneNIP mode": {"use_text_prompts": False, "use_segmentor": False, "diffusion_steps": 0},
    "PromptMAD + prompt matching": {"use_prompt_matching": True},
}
PADIM = "anomalib Padim (same backbone)"
BANK_PATCHES = 2150  # 1 % of 210 training images x 32 x 32 patches at 256 px


def _padim(image_size: int) -> torch.nn.Module:
    """The Padim network of anomalib as the benchmark builds it, its Gaussian fitted to random images."""
    import torch
    from anomalib.models.image.padim.torch_model import PadimModel

    from anomalib_promptmad.benchmark.models import EFFICIENTNET_LAYERS

    model = PadimModel(backbone="tf_efficientnet_lite2", pre_trained=False, **EFFICIENTNET_LAYERS["Padim"]).train()
    with torch.no_grad():
        embedding = model(torch.rand(2, 3, image_size, image_size))  # (B, C, h, w): training returns embeddings
    channels, cells = embedding.shape[1], embedding.shape[2] * embedding.shape[3]
    model.gaussian.mean = embedding.mean(0).flatten(1)
    model.gaussian.inv_covariance = torch.eye(channels).expand(cells, channels, channels).contiguous()
    return model.eval()


def _promptmad(mode: str, image_size: int, layers: int) -> torch.nn.Module:
    """PromptMAD's network in ``mode``, calibrated on random images."""
    import torch

    from anomalib_promptmad.fusion_rule import FusionRule
    from anomalib_promptmad.torch_model import PromptMADModel

    model = PromptMADModel(
        image_size=(image_size, image_size), num_encoder_layers=layers, num_decoder_layers=layers, **MODES[mode],
    ).eval()
    categories = 2
    model.set_text_embeddings(torch.nn.functional.normalize(torch.randn(categories, 2, 384), dim=-1))
    model.set_prototypes(torch.randn(categories, model.tokenizer.out_channels))
    model.set_prompt_images(torch.rand(categories, 3, image_size, image_size))
    model.set_map_scale(torch.ones(categories))
    with torch.no_grad():
        model.tokenizer.fit_statistics(model.unstandardized_tokens(torch.rand(4, 3, image_size, image_size)))
    if model.uses_prompt_matching:
        channels = model.patch_embedding.out_channels
        model.set_matching_banks([torch.randn(BANK_PATCHES, channels) for _ in range(categories)])
        model.set_matching_scale(torch.ones(categories))
    model.set_fusion_rules([FusionRule()] * categories)
    model.set_thresholds(torch.ones(categories), torch.ones(categories))
    return model


def _measure(mode: str, image_size: int, repeats: int, threads: int, layers: int) -> dict:
    import resource

    import torch

    from anomalib_promptmad.infrastructure.timing import calls_per_second

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mode == PADIM:
        model = _padim(image_size)
        stages = {"backbone (frozen)": model.feature_extractor}
    else:
        model = _promptmad(mode, image_size, layers)
        stages = {
            "backbone (frozen)": model.backbone,
            "text tokens": model.text_tokens,
            "reconstruction": model.reconstructor,
            "refiner (OneNIP)": model.refiner,
            "segmentor": model.segmentor,
            "diffusion": model.diffusion,
        }
    parameters = {name: sum(p.numel() for p in module.parameters()) for name, module in stages.items() if module}
    result = {"mode": mode, "parameters": parameters}
    with torch.inference_mode():
        for batch in (1, 8):
            images = torch.rand(batch, 3, image_size, image_size)
            rate = calls_per_second(lambda: model(images), warmup=1, min_iterations=repeats, min_seconds=0)  # noqa: B023
            result[f"images_per_s_b{batch}"] = rate * batch
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    """Run every mode in a subprocess and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4, help="encoder and decoder depth (paper: 4)")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(_measure(args.mode, args.image_size, args.repeats, args.threads, args.layers)))
        return
    rows = []
    for mode in [*MODES, PADIM]:
        command = [sys.executable, __file__, "--mode", mode, "--image-size", str(args.image_size),
                   "--repeats", str(args.repeats), "--threads", str(args.threads), "--layers", str(args.layers)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    print(f"image size {args.image_size}, {args.threads} threads, {args.layers}+{args.layers} layers, CPU\n")
    print("| mode | images/s (batch 1) | images/s (batch 8) | peak RSS (MB) | trainable parameters |")
    print("|---|---|---|---|---|")
    for row in rows:
        trainable = sum(v for k, v in row["parameters"].items() if "frozen" not in k)
        print(f"| {row['mode']} | {row['images_per_s_b1']:.2f} | {row['images_per_s_b8']:.2f} | "
              f"{row['peak_rss_mb']:.0f} | {trainable / 1e6:.2f} M |")
    comparisons = [
        ("full / OneNIP-mode", rows[0], rows[1], " (target >= 0.85x)"),
        ("PromptMAD + prompt matching / Padim", rows[2], rows[-1], ""),
    ]
    for label, mine, reference, target in comparisons:
        for batch in (1, 8):
            ratio = mine[f"images_per_s_b{batch}"] / reference[f"images_per_s_b{batch}"]
            print(f"\n{label} throughput at batch {batch}: {ratio:.2f}x{target}")
    print("\nparameters per stage:")
    for row in rows:
        print(f"  {row['mode']}: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in row["parameters"].items()))


if __name__ == "__main__":
    main()
