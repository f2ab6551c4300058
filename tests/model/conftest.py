# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Shared fixtures of the PromptMAD end-to-end tests: demo data and one tiny model trained once per session.

Training a model is the expensive part (tens of seconds on 2 cores), so :func:`trained` fits, tests and
checkpoints a single tiny PromptMAD once; every contract, export and quality test reuses it. Tests that
need other settings (ablations, bad inputs) build small models without an ``Engine``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tiny_model
import torch

IMAGE_SIZE = 64
EPOCHS = 8
SEED = 0

# the session's model also matches prompts and retrieves two of three candidates: every inference path is
# covered by the contract, fusion and export tests
TINY_MODEL: dict[str, Any] = {
    **tiny_model.TINY_MODEL,
    "image_size": IMAGE_SIZE,
    "use_prompt_matching": True,
    "prompt_candidates": 3,
    "retrieved_prompts": 2,
}


@dataclass
class TrainedRun:
    """Everything the session's single training run produced.

    Attributes:
        model: The trained, calibrated Lightning module (after ``Engine.test``).
        engine: The engine that trained and tested it.
        datamodule: The demo datamodule it was trained on.
        checkpoint: Path of the checkpoint ``Engine.fit`` wrote.
        history: One dict of ``train_*`` epoch metrics per epoch.
        test_metrics: Metrics returned by ``Engine.test``.
    """

    model: Any
    engine: Any
    datamodule: Any
    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)


def _tiny_model(**overrides: Any) -> Any:
    """A tiny PromptMAD with :data:`TINY_MODEL` settings, ``overrides`` applied."""
    from anomalib_promptmad import PromptMAD

    return PromptMAD(**{**TINY_MODEL, "max_epochs": EPOCHS, **overrides})


@pytest.fixture(scope="session")
def model_settings() -> dict[str, Any]:
    """Init arguments of the session's tiny PromptMAD (without ``prompt_library``)."""
    return {**TINY_MODEL, "max_epochs": EPOCHS}


@pytest.fixture(scope="session")
def make_model() -> Callable[..., Any]:
    """Factory of tiny PromptMAD models: ``make_model(**overrides)``."""
    return _tiny_model


def _run_command(
    args: Sequence[str],
    cwd: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command in a fresh process (offline, ``env`` added) and return it completed, output captured."""
    # one thread per process, as in this process (see _one_torch_thread)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    environment.update(env or {})
    return subprocess.run(
        list(args),
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def run_command() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_command(args, cwd, timeout=300, env=None)``: a command in a fresh process, offline, output captured."""
    return _run_command


@pytest.fixture(scope="session")
def anomalib_cli() -> list[str]:
    """The stock ``anomalib`` console script installed beside this interpreter."""
    script = Path(sys.executable).with_name("anomalib")
    assert script.is_file(), f"the anomalib console script is missing beside {sys.executable}"
    return [str(script)]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated demo dataset (three categories, 64 px) with its ``prompts.yaml``."""
    from anomalib_promptmad import generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("data") / "promptmad_demo", image_size=IMAGE_SIZE, seed=SEED)


def _demo_datamodule(root: Path, **overrides: Any) -> Any:
    """A multi-class datamodule over ``root`` with small batches and no worker processes."""
    from anomalib_promptmad import MultiClassMVTecAD

    settings = {"train_batch_size": 8, "eval_batch_size": 8, "num_workers": 0, **overrides}
    return MultiClassMVTecAD(root=root, **settings)


@pytest.fixture(scope="session")
def make_datamodule() -> Callable[..., Any]:
    """Factory of small-batch multi-class datamodules: ``make_datamodule(root, **overrides)``."""
    return _demo_datamodule


@pytest.fixture(scope="session")
def trained(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """Fit, then test, one tiny PromptMAD on the demo data (once per session)."""
    from anomalib.engine import Engine
    from lightning.pytorch import Callback, seed_everything

    class EpochMetrics(Callback):
        """Records the epoch means of the logged training losses."""

        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            del pl_module
            self.history.append(
                {
                    name.removesuffix("_epoch"): float(value)
                    for name, value in trainer.callback_metrics.items()
                    if name.startswith("train_") and name.endswith("_epoch")
                }
            )

    seed_everything(SEED, workers=True)
    recorder = EpochMetrics()
    datamodule = _demo_datamodule(demo_root)
    model = _tiny_model(prompt_library=str(demo_root / "prompts.yaml"))
    results_dir = tmp_path_factory.mktemp("results")
    engine = Engine(default_root_dir=results_dir, accelerator="cpu", devices=1, logger=False, callbacks=[recorder])
    # session fixtures are set up before the module-scoped thread setting
    with _one_torch_thread():
        engine.fit(model=model, datamodule=datamodule)
        (results,) = engine.test(model=model, datamodule=datamodule)
    checkpoint = Path(engine.trainer.checkpoint_callback.best_model_path)
    return TrainedRun(
        model=model,
        engine=engine,
        datamodule=datamodule,
        checkpoint=checkpoint,
        history=recorder.history,
        test_metrics={name: float(value) for name, value in results.items()},
    )


def _spread_indices(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)`` (the demo splits are sorted by category)."""
    return torch.linspace(0, length - 1, count).round().long().unique().tolist()


@pytest.fixture(scope="session")
def test_subset(trained: TrainedRun) -> Any:
    """Eight demo test images (normal and anomalous, every category) as a dataset."""
    dataset = trained.datamodule.test_data
    return dataset.subsample(_spread_indices(len(dataset), 8))


@pytest.fixture(scope="session")
def test_images(trained: TrainedRun, test_subset: Any) -> tuple[torch.Tensor, list[str]]:
    """The images of :func:`test_subset`, pre-processed ``(8, 3, 64, 64)``, and their paths."""
    items = [test_subset[index] for index in range(len(test_subset))]
    images = torch.stack([item.image for item in items])
    resize = trained.model.pre_processor.transform
    return resize(images), [item.image_path for item in items]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the block.

    The models are tiny: a second thread gains about a quarter on an idle 2-core machine, but when another
    process keeps a core busy, two OpenMP threads slow training and export down about five-fold (measured).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_module() -> Iterator[None]:
    """Every test module of this folder runs on one thread (session fixtures enter it themselves)."""
    with _one_torch_thread():
        yield
