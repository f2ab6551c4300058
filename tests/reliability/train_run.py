# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""One PromptMAD training run in its own process; run by the reliability tests.

A separate process is needed to kill a run without any clean-up (``os._exit`` in the middle of an epoch,
as a power cut or the OOM killer would) and to start Lightning's DDP workers (the launcher re-runs this
file). Rank 0 writes ``<out>/result.json``: test metrics, the checkpoint files, the trainer's checkpoint IO.

Usage::

    python train_run.py --root DATA --out FOLDER --model '{"image_size": 32, ...}' [--crash-at-step N]
        [--ckpt-path FILE] [--devices 2] [--precision bf16-mixed]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from anomalib_promptmad import MultiClassMVTecAD, PromptMAD

CRASH_EXIT_CODE = 37


class CrashAtStep(Callback):
    """Ends the process abruptly (no exception, no clean-up, no checkpoint) after ``step`` optimiser steps."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:  # noqa: ANN401
        del pl_module, args
        if trainer.global_step >= self.step:
            os._exit(CRASH_EXIT_CODE)


def main() -> None:
    """Parse the arguments, fit (maybe crashing or resuming), test and write the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="dataset root (MVTec layout)")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--model", type=json.loads, required=True, help="PromptMAD init arguments (JSON)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--crash-at-step", type=int, default=None)
    parser.add_argument("--ckpt-path", type=Path, default=None)
    args = parser.parse_args()

    torch.set_num_threads(1)
    seed_everything(args.seed, workers=True)
    datamodule = MultiClassMVTecAD(
        root=args.root, train_batch_size=args.batch_size, eval_batch_size=8, num_workers=0
    )
    model = PromptMAD(**args.model)
    strategy: Any = "auto"
    if args.devices > 1:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    callbacks = [CrashAtStep(args.crash_at_step)] if args.crash_at_step is not None else []
    engine = Engine(
        default_root_dir=args.out / "results",
        accelerator="cpu",
        devices=args.devices,
        strategy=strategy,
        precision=args.precision,
        logger=False,
        callbacks=callbacks,
    )
    engine.fit(model=model, datamodule=datamodule, ckpt_path=args.ckpt_path)
    checkpoint_io = type(engine.trainer.strategy.checkpoint_io).__name__
    (metrics,) = engine.test(model=model, datamodule=datamodule)
    if engine.trainer.global_rank == 0:
        callback = engine.trainer.checkpoint_callback
        result = {
            "metrics": {name: float(value) for name, value in metrics.items()},
            "best_model_path": callback.best_model_path,
            "last_model_path": callback.last_model_path,
            "checkpoint_io": checkpoint_io,
            "world_size": engine.trainer.world_size,
            "global_step": engine.trainer.global_step,
        }
        (args.out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
