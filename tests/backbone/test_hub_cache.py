# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``promptmad-weights``: the packaged weights in the hub cache, where plain timm finds them offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants
from timm.models import get_pretrained_cfg

from anomalib_promptmad.backbone import packaged_timm_state_dict
from anomalib_promptmad.backbone.hub_cache import (
    MARKER_FILE,
    hub_cache_status,
    install_in_hub_cache,
    remove_from_hub_cache,
    timm_hub_location,
)
from anomalib_promptmad.deploy.weights_cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
LITE2 = "tf_efficientnet_lite2"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that timm's downloads (``hf_hub_download``, offline) read."""
    assert constants.HF_HUB_OFFLINE  # tests/conftest.py sets HF_HUB_OFFLINE=1 before any import
    folder = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    # the load must go through the hub cache, not through a weights file registered in this process
    assert get_pretrained_cfg(LITE2).file is None
    return folder


def _features(name: str = LITE2) -> torch.nn.Module:
    """What anomalib's TimmFeatureExtractor builds (strides 4 / 8 / 16)."""
    return timm.create_model(name, pretrained=True, pretrained_cfg=None, features_only=True, out_indices=[1, 2, 3])


def test_install_makes_plain_timm_load_the_packaged_weights(hub: Path) -> None:
    """Missing before (offline), installed, loaded by the plain name, byte-identical; a rerun changes nothing."""
    assert hub_cache_status(LITE2).state == "missing"
    with pytest.raises(OSError, match="cannot find the requested files in the local cache"):
        _features()

    entry, action = install_in_hub_cache(LITE2)
    assert (action, entry.state, entry.installed_here) == ("installed", "packaged", True)
    assert entry.weights_file is not None
    assert entry.weights_file.is_relative_to(hub / "models--timm--tf_efficientnet_lite2.in1k" / "snapshots")

    expected = packaged_timm_state_dict(LITE2)
    state = _features().state_dict()
    for key in ("conv_stem.weight", "blocks.4.2.conv_pwl.weight", "blocks.1.0.bn1.running_var"):
        assert torch.equal(state[key], expected[key]), key

    again, action = install_in_hub_cache(LITE2)
    assert (action, again.weights_file) == ("up to date", entry.weights_file)


def test_weights_downloaded_from_the_hub_are_left_alone(hub: Path) -> None:
    """A cache that holds the hub's own file keeps it: install and remove change nothing there."""
    repo_id, filename = timm_hub_location(LITE2)
    assert (repo_id, filename) == ("timm/tf_efficientnet_lite2.in1k", "model.safetensors")
    folder = hub / "models--timm--tf_efficientnet_lite2.in1k"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    (folder / "snapshots" / revision).mkdir(parents=True)
    downloaded = folder / "snapshots" / revision / filename
    downloaded.write_bytes(b"the hub's file")

    entry, action = install_in_hub_cache(LITE2)
    assert (action, entry.state, entry.installed_here, entry.weights_file) == ("left as is", "other", False, downloaded)
    assert remove_from_hub_cache(LITE2) == []
    assert downloaded.read_bytes() == b"the hub's file"
    assert (folder / "refs" / "main").read_text() == revision


def test_remove_deletes_what_install_wrote(hub: Path) -> None:
    """Remove takes the snapshot, refs/main and the then-empty repository folder: timm is back to the hub."""
    entry, _ = install_in_hub_cache(LITE2)
    assert entry.weights_file is not None
    removed = remove_from_hub_cache(LITE2)
    assert removed == [entry.weights_file.parent]
    assert hub_cache_status(LITE2).state == "missing"
    assert not (hub / "models--timm--tf_efficientnet_lite2.in1k").exists()


def test_install_replaces_an_earlier_install_of_other_weights(hub: Path) -> None:
    """A snapshot written here for another package version is recognised, replaced and deleted."""
    entry, _ = install_in_hub_cache(LITE2)
    assert entry.weights_file is not None
    folder = entry.weights_file.parents[2]
    old = folder / "snapshots" / ("f" * 40)
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"older weights")
    (old / MARKER_FILE).write_text('{"sha1": "' + "f" * 40 + '"}')
    (folder / "refs" / "main").write_text("f" * 40)
    stale = hub_cache_status(LITE2)
    assert (stale.state, stale.installed_here) == ("other", True)

    entry, action = install_in_hub_cache(LITE2)
    assert (action, entry.state) == ("installed", "packaged")
    assert not old.exists()


def test_command_checks_installs_and_removes(hub: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit status 1 while missing, 0 once installed; an unusable --hub-cache is one error (status 2)."""
    arguments = ["--backbone", LITE2, "--hub-cache", str(hub)]
    assert main(["check", *arguments]) == 1
    assert "run `promptmad-weights install`" in capsys.readouterr().out
    assert main(["install", *arguments]) == 0
    out = capsys.readouterr().out
    assert f"{LITE2}: installed; timm loads the packaged weights" in out
    assert "HF_HUB_OFFLINE=1" in out
    assert main(["check", *arguments]) == 0
    assert main(["remove", *arguments]) == 0
    assert main(["check", *arguments]) == 1
    capsys.readouterr()

    not_a_folder = hub.parent / "file"
    not_a_folder.write_text("")
    assert main(["install", "--hub-cache", str(not_a_folder)]) == 2
    assert f"--hub-cache {not_a_folder} is not a folder" in capsys.readouterr().err


def test_command_parses_arguments_before_importing_torch() -> None:
    """A wrong backbone is refused by argparse (status 2) in a process that never imported torch."""
    code = (
        "import sys\nfrom anomalib_promptmad.deploy.weights_cli import main\n"
        "try:\n    main(['install', '--backbone', 'resnet18'])\n"
        "except SystemExit as exit:\n    print(exit.code, 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.split() == ["2", "False"], result.stderr[-2000:]
    assert "invalid choice: 'resnet18'" in result.stderr


def test_console_script_is_declared() -> None:
    """The project declares `promptmad-weights` -> the main() tested here."""
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    with (REPO_ROOT / "pyproject.toml").open("rb") as stream:
        scripts = tomllib.load(stream)["project"]["scripts"]
    assert scripts["promptmad-weights"] == "anomalib_promptmad.deploy.weights_cli:main"
