# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Bad inputs give one clear error and no partial output.

* a checkpoint of another model (Padim) passed as PromptMAD: to the stock ``anomalib export`` command,
  to ``Engine.predict``;
* a missing export backend (``openvino`` made unimportable): to ``Engine.export`` and ``promptmad-infer``;
* an unreadable image in the input folder: the run stops before anything is written and names the file
  (chosen over skipping, so that a table never silently lacks an image).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
from deploy_support import Deployment, anomalib_command, run

from anomalib_promptmad.deploy import MissingBackendError, NotAPromptMADCheckpointError, UnreadableImageError
from anomalib_promptmad.deploy.infer import main as promptmad_infer

pytestmark = pytest.mark.slow


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def padim_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Padim checkpoint: its real state dict and hyper-parameters in Lightning's checkpoint layout."""
    from anomalib.models import Padim
    from lightning import __version__ as lightning_version

    model = Padim(backbone="resnet18", pre_trained=False, n_features=10)
    path = tmp_path_factory.mktemp("padim") / "padim.ckpt"
    torch.save(
        {
            "pytorch-lightning_version": lightning_version,
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "epoch": 0,
            "global_step": 0,
        },
        path,
    )
    return path


@pytest.fixture
def broken_folder(deployment: Deployment, tmp_path: Path) -> tuple[Path, Path]:
    """The session images plus one file with a .png name that is not an image."""
    folder = tmp_path / "images"
    shutil.copytree(deployment.images, folder)
    broken = folder / "zz_truncated.png"
    broken.write_bytes((deployment.images / sorted(p.name for p in deployment.images.iterdir())[0]).read_bytes()[:60])
    return folder, broken


def test_stock_export_refuses_a_padim_checkpoint(padim_checkpoint: Path, tmp_path: Path) -> None:
    """`anomalib export --model PromptMAD --ckpt_path padim.ckpt`: exit status != 0, says Padim, writes nothing."""
    result = run(
        [*anomalib_command(), "export", "--model", "PromptMAD", "--export_type", "torch",
         "--ckpt_path", str(padim_checkpoint), "--export_root", str(tmp_path / "export"),
         "--default_root_dir", str(tmp_path / "results")],
        cwd=tmp_path,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "is not a PromptMAD checkpoint: it looks like a Padim checkpoint" in output, output[-3000:]
    assert _files(tmp_path / "export") == []


def test_predict_refuses_a_padim_checkpoint(deployment: Deployment, padim_checkpoint: Path, tmp_path: Path) -> None:
    """Engine.predict (the `anomalib predict` path) stops at the checkpoint, before any overlay or CSV."""
    from anomalib.engine import Engine

    from anomalib_promptmad import PromptMAD

    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(NotAPromptMADCheckpointError, match="looks like a Padim checkpoint"):
        engine.predict(model=PromptMAD(text_encoder="minilm"), data_path=deployment.images, ckpt_path=padim_checkpoint)
    assert [path for path in _files(tmp_path / "results") if path.suffix in {".png", ".csv"}] == []


def test_engine_export_without_openvino(eager_model, tmp_path: Path, monkeypatch) -> None:
    """OpenVINO export with `import openvino` failing: one clear error naming the package; nothing written."""
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(MissingBackendError, match=r"OpenVINO export needs .*openvino.*pip install"):
        eager_model.to_openvino(tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_promptmad_infer_without_openvino(deployment: Deployment, tmp_path: Path, monkeypatch, capsys) -> None:
    """promptmad-infer on an .xml with `import openvino` failing: exit status 2, clear message, no output."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.chdir(tmp_path)
    status = promptmad_infer([str(deployment.exports["openvino"]), str(deployment.images), "-o", str(tmp_path / "o")])
    assert status == 2
    assert "needs Python packages that cannot be imported: openvino" in capsys.readouterr().err
    assert _files(tmp_path) == []


def test_promptmad_infer_stops_at_an_unreadable_image(
    deployment: Deployment, broken_folder, monkeypatch, capsys
) -> None:
    """The broken file is named; no overlay, no CSV."""
    folder, broken = broken_folder
    monkeypatch.chdir(folder.parent)
    output = folder.parent / "out"
    status = promptmad_infer(
        [str(deployment.exports["onnx"]), str(folder), "-o", str(output), "--runtime", "onnxruntime"]
    )
    assert status == 2
    assert f"cannot read image '{broken}'" in capsys.readouterr().err
    assert _files(output) == [] and not list(folder.parent.glob(".out.*"))


def test_predict_stops_at_an_unreadable_image(deployment: Deployment, broken_folder, tmp_path: Path) -> None:
    """Engine.predict on a folder with a broken image: the file is named, nothing is written."""
    from anomalib.engine import Engine

    from anomalib_promptmad import PromptMAD

    folder, broken = broken_folder
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", devices=1, logger=False)
    with pytest.raises(UnreadableImageError, match=f"cannot read image '{broken}'"):
        engine.predict(model=PromptMAD(text_encoder="minilm"), data_path=folder, ckpt_path=deployment.checkpoint)
    assert [path for path in _files(tmp_path / "results") if path.suffix in {".png", ".csv"}] == []
