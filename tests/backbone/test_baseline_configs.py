# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``configs/baselines/*.yaml``: anomalib's models on the packaged Lite2 weights, from the stock CLI, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anomalib.models import AnomalibModule
from huggingface_hub import constants
from jsonargparse import ArgumentParser
from torchvision.transforms.v2 import Normalize, Resize

from anomalib_promptmad.backbone import BackbonePreProcessor, packaged_timm_state_dict
from anomalib_promptmad.backbone.hub_cache import install_in_hub_cache

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "configs" / "baselines"
LITE2 = "tf_efficientnet_lite2"

# config -> (module path of the pretrained feature extractor, its strides)
EXPECTED = {
    "padim_lite2.yaml": ("model.feature_extractor.feature_extractor", [4, 8, 16]),
    "patchcore_lite2.yaml": ("model.feature_extractor.feature_extractor", [8, 16]),
    "stfpm_lite2.yaml": ("model.teacher_model.feature_extractor", [4, 8, 16]),
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A hub cache holding the packaged Lite2 weights (what `promptmad-weights install` writes)."""
    assert constants.HF_HUB_OFFLINE
    folder = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    install_in_hub_cache(LITE2)
    return folder


def _parse_model(*arguments: str) -> AnomalibModule:
    """Build the model as `anomalib train --model ...` does (the parser set-up of anomalib.cli.AnomalibCLI)."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(AnomalibModule, "model", fail_untyped=False, required=True)
    return parser.instantiate_classes(parser.parse_args(list(arguments))).model


def test_every_shipped_baseline_config_is_tested() -> None:
    """A new config in configs/baselines/ needs its row in EXPECTED."""
    assert sorted(path.name for path in CONFIGS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("config", sorted(EXPECTED))
def test_config_builds_the_model_on_the_packaged_weights(hub: Path, config: str) -> None:
    """Each config, with a size override: packaged tensors in the pretrained extractor, Lite2's normalisation."""
    del hub
    model = _parse_model("--model", str(CONFIGS / config), "--model.pre_processor.init_args.image_size", "64")
    extractor_path, strides = EXPECTED[config]
    extractor = model.get_submodule(extractor_path)
    expected = packaged_timm_state_dict(LITE2)
    state = extractor.state_dict()
    for key in ("conv_stem.weight", "blocks.2.0.conv_pwl.weight"):
        assert torch.equal(state[key], expected[key]), key
    assert extractor.feature_info.reduction() == strides

    assert isinstance(model.pre_processor, BackbonePreProcessor)
    resize, normalize = model.pre_processor.transform.transforms
    assert isinstance(resize, Resize)
    assert list(resize.size) == [64, 64]
    assert isinstance(normalize, Normalize)
    assert list(normalize.mean) == [0.5, 0.5, 0.5]
    assert list(normalize.std) == [0.5, 0.5, 0.5]


def test_backbone_pre_processor_checks_its_arguments() -> None:
    """One side or [height, width]; an unknown backbone is named."""
    assert BackbonePreProcessor(LITE2, [48, 80]).image_size == (48, 80)
    with pytest.raises(ValueError, match=r"image_size must be one side or \[height, width\]"):
        BackbonePreProcessor(LITE2, [64, 64, 3])
    with pytest.raises(ValueError, match="Unknown timm backbone"):
        BackbonePreProcessor("not_a_backbone")


@pytest.mark.slow
def test_stock_anomalib_train_with_the_padim_config_offline(tmp_path: Path) -> None:
    """`promptmad-weights install`, then the stock `anomalib train --model configs/baselines/padim_lite2.yaml`.

    Offline (HF_HUB_OFFLINE=1) on generated data; the checkpoint's backbone tensors are the packaged ones and its
    stored pre-processor normalises with Lite2's mean = std = 0.5. `anomalib test --ckpt_path` with the same model
    file but without the size override reprints the metrics of the test at the end of training.
    """
    from anomalib_promptmad import generate_demo_dataset

    data = generate_demo_dataset(
        tmp_path / "demo", categories=["disc", "fabric"], image_size=64, n_train=6, n_test_good=2, n_test_defect=1
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "200",  # Rich prints whole metric names and values
    }

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)

    installed = run(sys.executable, "-m", "anomalib_promptmad.deploy.weights_cli", "install", "--backbone", LITE2)
    assert installed.returncode == 0, installed.stderr[-3000:]
    anomalib = str(Path(sys.executable).with_name("anomalib"))
    trained = run(
        anomalib, "train", "--model", str(CONFIGS / "padim_lite2.yaml"),
        "--model.pre_processor.init_args.image_size", "64",
        "--data", "MultiClassMVTecAD", "--data.root", str(data), "--data.num_workers", "0",
        "--default_root_dir", str(tmp_path / "results"), "--trainer.logger", "false",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-4000:]
    metrics = _metrics(trained.stdout)
    assert set(metrics) == {"image_AUROC", "image_F1Score", "pixel_AUROC", "pixel_F1Score"}

    (checkpoint_path,) = (tmp_path / "results").rglob("model.ckpt")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    expected = packaged_timm_state_dict(LITE2)
    for key in ("conv_stem.weight", "blocks.4.0.conv_pw.weight"):
        stored = checkpoint["state_dict"][f"model.feature_extractor.feature_extractor.{key}"]
        assert torch.equal(stored, expected[key]), key
    normalize = checkpoint["anomalib_pre_processor_config"]["transform"]["init_args"]["transforms"][1]
    assert normalize["init_args"]["mean"] == [0.5, 0.5, 0.5]
    assert normalize["init_args"]["std"] == [0.5, 0.5, 0.5]

    tested = run(
        anomalib, "test", "--model", str(CONFIGS / "padim_lite2.yaml"), "--ckpt_path", str(checkpoint_path),
        "--data", "MultiClassMVTecAD", "--data.root", str(data), "--data.num_workers", "0",
        "--default_root_dir", str(tmp_path / "tested"), "--trainer.logger", "false",
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-4000:]
    assert _metrics(tested.stdout) == metrics  # the checkpoint's 64 px, not the model file's 256


def _metrics(output: str) -> dict[str, float]:
    """The test metrics of anomalib's Rich table ("│ pixel_AUROC │ 0.98 │")."""
    rows = (re.match(r"^[│┃]\s*([\w/]+)\s*[│┃]\s*(-?[0-9.eE+-]+)\s*[│┃]\s*$", line) for line in output.splitlines())
    return {row.group(1): float(row.group(2)) for row in rows if row}
