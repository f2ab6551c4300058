# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Who sets the training length: the trainer (``--trainer.max_epochs``), unless the model is given one.

anomalib lets a model's ``trainer_arguments`` replace the user's trainer arguments; PromptMAD used to return
its own default (1000 epochs) there, so ``--trainer.max_epochs 2`` was silently ignored. The end-to-end CLI
check is in ``test_stock_cli.py``; these check the merge itself and the open-ended case, without training.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from anomalib.engine import Engine
from anomalib.engine.engine import _TrainerArgumentsCache


def test_the_trainers_max_epochs_survives_a_model_without_one(make_model) -> None:
    """The stock engine's merge keeps the user's trainer value when the model has no ``max_epochs``."""
    cache = _TrainerArgumentsCache(max_epochs=2, check_val_every_n_epoch=1)
    cache.update(make_model(max_epochs=None))
    assert cache.args["max_epochs"] == 2


def test_a_model_max_epochs_still_sets_the_length(make_model) -> None:
    """``max_epochs`` given to the model is the training length (and validation runs after it only)."""
    cache = _TrainerArgumentsCache(max_epochs=2)
    cache.update(make_model(max_epochs=3))
    assert cache.args["max_epochs"] == 3
    assert cache.args["check_val_every_n_epoch"] == 3


def test_an_open_ended_run_is_refused_with_the_options_to_set(
    demo_root: Path, make_model, make_datamodule, tmp_path: Path
) -> None:
    """A trainer without an epoch count (``max_steps`` only) is refused before training: calibration needs an end."""
    model = make_model(max_epochs=None, prompt_library=str(demo_root / "prompts.yaml"))
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, max_steps=2)
    with pytest.raises(ValueError, match=r"--trainer\.max_epochs N.*--model\.max_epochs N"):
        engine.fit(model=model, datamodule=make_datamodule(demo_root))


def test_validation_runs_after_the_trainers_last_epoch(
    demo_root: Path, make_model, make_datamodule, tmp_path: Path
) -> None:
    """With the length from the trainer, the model validates (and so calibrates) once, after its last epoch."""
    model = make_model(max_epochs=None, prompt_library=str(demo_root / "prompts.yaml"))
    engine = Engine(
        default_root_dir=tmp_path, accelerator="cpu", devices=1, logger=False, max_epochs=2, limit_train_batches=1
    )
    engine.fit(model=model, datamodule=make_datamodule(demo_root))
    assert engine.trainer.current_epoch == 2
    assert engine.trainer.check_val_every_n_epoch == 2
    assert model.model.is_calibrated
