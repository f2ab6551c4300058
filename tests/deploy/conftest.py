# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Fixtures of the deployment tests (see ``deploy_support`` for why they are made this way)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from deploy_support import IMAGE_SIZE, TINY_MODEL, Deployment, anomalib_command, subprocess_env


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small models: one thread is faster than two when other processes share the cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pick_test_images(data_root: Path, target: Path) -> Path:
    """Copy a good and a defective test image of each category into one flat folder."""
    import shutil

    target.mkdir(parents=True)
    for category in sorted(path for path in data_root.iterdir() if path.is_dir()):
        test = category / "test"
        good = sorted((test / "good").glob("*.png"))[:1]
        bad = sorted(path for folder in test.iterdir() if folder.name != "good" for path in folder.glob("*.png"))[:2]
        for path in [*good, *bad]:
            shutil.copy(path, target / f"{category.name}_{path.parent.name}_{path.name}")
    return target


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Train a tiny PromptMAD, checkpoint it, and export it in every format from the checkpoint."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_promptmad import MultiClassMVTecAD, PromptMAD, generate_demo_dataset

    root = tmp_path_factory.mktemp("deploy")
    data_root = generate_demo_dataset(root / "demo", image_size=IMAGE_SIZE, seed=0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seed_everything(0, workers=True)
        datamodule = MultiClassMVTecAD(root=data_root, train_batch_size=8, eval_batch_size=8, num_workers=0)
        model = PromptMAD(**TINY_MODEL, prompt_library=str(data_root / "prompts.yaml"))
        engine = Engine(default_root_dir=root / "results", accelerator="cpu", devices=1, logger=False)
        engine.fit(model=model, datamodule=datamodule)
        checkpoint = Path(engine.trainer.checkpoint_callback.best_model_path)

        # the stock command, from the checkpoint, in a child process ...
        command = [
            *anomalib_command(), "export", "--model", "PromptMAD", "--export_type", "openvino",
            "--ckpt_path", str(checkpoint), "--export_root", str(root / "cli_export"),
            "--default_root_dir", str(root / "cli_results"),
        ]  # fmt: skip
        child = subprocess.Popen(
            command, cwd=root, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # ... while this process exports torch and ONNX from the same checkpoint with Engine.export
            exporter = Engine(default_root_dir=root / "export_results", accelerator="cpu", devices=1, logger=False)
            exports = {
                kind: exporter.export(
                    model=PromptMAD(**TINY_MODEL), export_type=kind, ckpt_path=checkpoint, export_root=root / "export"
                )
                for kind in ("torch", "onnx")
            }
            stdout, stderr = child.communicate(timeout=600)
        finally:
            if child.poll() is None:
                child.kill()
    finally:
        torch.set_num_threads(previous)
    cli_export = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
    exports["openvino"] = root / "cli_export" / "weights" / "openvino" / "model.xml"
    return Deployment(
        root=root,
        data_root=data_root,
        checkpoint=checkpoint,
        exports=exports,
        cli_export=cli_export,
        images=_pick_test_images(data_root, root / "images"),
    )


@pytest.fixture(scope="session")
def eager_model(deployment: Deployment) -> Any:
    """The checkpoint loaded back as a PromptMAD Lightning module (eval mode)."""
    from anomalib_promptmad import PromptMAD

    return PromptMAD.load_from_checkpoint(deployment.checkpoint).eval()
