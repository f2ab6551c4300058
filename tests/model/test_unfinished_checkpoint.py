# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The checkpoint of a training run that did not finish is refused by predict and by every export.

PromptMAD calibrates (prompts, prototypes, map scales, fusion rules) after its last epoch; a run stopped
before that leaves ``model.ckpt`` and ``last.ckpt`` without calibration. Predicting used to ask for a
``dataset=`` no CLI user can pass, the torch export "succeeded" and its ``.pt`` crashed when run, ONNX
failed inside the tracer. Each now gives the same message, naming the checkpoint and how to resume.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import Callback

from anomalib_promptmad import PromptMAD
from anomalib_promptmad.deploy import UncalibratedModelError
from anomalib_promptmad.deploy.checkpoint import UnreadableCheckpointError

# what every refusal says, whatever was refused
_RESUME = r"did not finish \(saved during epoch 1 of 3\).*Resume the training: .*--ckpt_path .*last\.ckpt"


class _StopAfterOneBatch(Callback):
    """Stop the run after its first batch, as a kill would (checkpoints are written every epoch)."""

    def on_train_batch_end(self, trainer, *args, **kwargs) -> None:
        del args, kwargs
        trainer.should_stop = True


@pytest.fixture(scope="module")
def unfinished(demo_root: Path, make_model, make_datamodule, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.ckpt`` of a 3-epoch run stopped during its first epoch (never validated, so never calibrated)."""
    model = make_model(max_epochs=3, prompt_library=str(demo_root / "prompts.yaml"))
    root = tmp_path_factory.mktemp("unfinished")
    engine = Engine(default_root_dir=root, accelerator="cpu", devices=1, logger=False, callbacks=[_StopAfterOneBatch()])
    engine.fit(model=model, datamodule=make_datamodule(demo_root))
    assert not model.model.is_calibrated
    (checkpoint,) = root.rglob("model.ckpt")
    assert (checkpoint.parent / "last.ckpt").is_file()
    return checkpoint


def _written(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


def test_predict_refuses_it_and_says_how_to_resume(unfinished: Path, demo_root: Path, tmp_path: Path) -> None:
    """Engine.predict (the `anomalib predict` path) with the unfinished ``ckpt_path``: the one message."""
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    images = demo_root / "disc" / "test" / "good"
    with pytest.raises(UncalibratedModelError, match=_RESUME) as raised:
        engine.predict(model=PromptMAD(text_encoder="minilm"), data_path=images, ckpt_path=unfinished)
    assert f"'{unfinished}'" in str(raised.value) and "cannot predict" in str(raised.value)
    assert [path for path in _written(tmp_path / "results") if path.suffix in {".png", ".csv"}] == []


@pytest.mark.parametrize("export_type", ["torch", "onnx", "openvino"])
def test_every_export_refuses_it_with_the_same_message(unfinished: Path, export_type: str, tmp_path: Path) -> None:
    """Engine.export (the `anomalib export` path) from the unfinished checkpoint writes nothing."""
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(UncalibratedModelError, match=_RESUME) as raised:
        engine.export(
            model=PromptMAD(text_encoder="minilm"), export_type=export_type, ckpt_path=unfinished,
            export_root=tmp_path / "export",
        )  # fmt: skip
    assert f"'{unfinished}'" in str(raised.value)
    assert _written(tmp_path / "export") == []


def test_a_model_never_trained_is_refused_too(make_model, tmp_path: Path) -> None:
    """No checkpoint at all: the message says to train it to the end."""
    with pytest.raises(UncalibratedModelError, match=r"never calibrated.*Train it to the end"):
        make_model().to_torch(tmp_path / "export")
    assert _written(tmp_path / "export") == []


def test_the_message_points_at_the_checkpoint_to_resume_from(unfinished: Path) -> None:
    """The suggested ``--ckpt_path`` really resumes: it holds the optimiser and loop state of the run."""
    checkpoint = torch.load(unfinished.parent / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["optimizer_states"] and checkpoint["loops"]["fit_loop"]


def test_a_truncated_checkpoint_is_named_with_the_fix(unfinished: Path, demo_root: Path, tmp_path: Path) -> None:
    """A checkpoint cut short (interrupted copy): the path and the fix, not torch's "central directory" alone."""
    truncated = tmp_path / "copied.ckpt"
    truncated.write_bytes(unfinished.read_bytes()[:100_000])
    expected = rf"cannot read the checkpoint '{truncated}' \(100,000 bytes\).*interrupted copy or download"
    with pytest.raises(UnreadableCheckpointError, match=expected):
        PromptMAD.load_from_checkpoint(truncated)  # anomalib export's path
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(UnreadableCheckpointError, match=expected):  # a trainer's ckpt_path (predict, test)
        engine.predict(model=PromptMAD(text_encoder="minilm"), data_path=demo_root / "disc" / "test" / "good",
                       ckpt_path=truncated)  # fmt: skip
