# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fit and test PromptMAD with Lightning DDP on 2 CPU processes (gloo); run by ``test_ddp.py``.

Lightning's DDP launcher starts the second process by running this script again, so it must be a file
(not pytest itself). Every rank writes what it holds after testing to ``<out>/rank<r>.pt``: its test
metrics, its calibration buffers and the checkpoint path.

Usage::

    python ddp_fit_and_test.py --root DEMO_ROOT --out FOLDER --model '{"image_size": 64, ...}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from lightning.pytorch.strategies import DDPStrategy

from anomalib_promptmad import MultiClassMVTecAD, PromptMAD


def main() -> None:
    """Parse the arguments, fit, test and save each rank's state."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="demo dataset root")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--model", type=json.loads, required=True, help="PromptMAD init arguments (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    seed_everything(args.seed, workers=True)
    datamodule = MultiClassMVTecAD(root=args.root, train_batch_size=8, eval_batch_size=8, num_workers=0)
    model = PromptMAD(**args.model)
    engine = Engine(
        default_root_dir=args.out,
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo"),
        logger=False,
    )
    engine.fit(model=model, datamodule=datamodule)
    (metrics,) = engine.test(model=model, datamodule=datamodule)
    network = model.model
    torch.save(
        {
            "world_size": engine.trainer.world_size,
            "metrics": {name: float(value) for name, value in metrics.items()},
            "buffers": {
                name: getattr(network, name).clone()
                for name in (
                    "prototypes",
                    "prompt_features",
                    "prompt_memory",
                    "map_scale",
                    "fusion_segmentation_weight",
                    "fusion_product",
                    "image_threshold",
                    "pixel_threshold",
                )
            },
            "checkpoint": engine.trainer.checkpoint_callback.best_model_path,
        },
        args.out / f"rank{engine.trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
