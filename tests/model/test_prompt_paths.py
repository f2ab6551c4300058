# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Where prompt files are found, and what the messages say when they are not (issue 14, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import anomalib_promptmad.lightning_model as lightning_model
from anomalib_promptmad import MultiClassFolder, MultiClassMVTecAD
from anomalib_promptmad.prompts import PromptLibrary
from anomalib_promptmad.data.demo import main as demo_data_main


def _embeddings_with(model, datamodule, monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """The class text embeddings the model computes when it trains on ``datamodule`` (no training run)."""
    monkeypatch.setattr(model, "_datamodule", lambda: datamodule)
    model.categories = list(datamodule.categories)
    model._set_text_embeddings()  # what setup("fit") calls
    return model.model.text_tokens.embeddings.clone()


@pytest.mark.parametrize("datamodule_class", [MultiClassMVTecAD, MultiClassFolder])
def test_the_dataset_roots_prompts_yaml_is_read_when_no_library_is_given(
    demo_root: Path, make_model, datamodule_class, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``<root>/prompts.yaml`` (what promptmad-demo-data writes) gives the same embeddings as passing it."""
    datamodule = datamodule_class(root=demo_root, categories=["disc", "fabric"], num_workers=0)
    implicit = make_model()
    found = _embeddings_with(implicit, datamodule, monkeypatch)
    explicit = make_model(prompt_library=str(demo_root / "prompts.yaml"))
    expected = _embeddings_with(explicit, datamodule, monkeypatch)
    assert torch.equal(found, expected)
    assert implicit.hparams["prompt_library"] == [str(demo_root / "prompts.yaml")]  # recorded in the checkpoint
    packaged_only = make_model(prompt_library=None)
    with monkeypatch.context() as patched:
        patched.setattr(lightning_model, "dataset_prompt_file", lambda root: None)  # as before: the file is not read
        assert not torch.equal(_embeddings_with(packaged_only, datamodule, patched), expected)


def test_a_missing_relative_prompt_file_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the current directory it was resolved against and the absolute-path fix."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="read from the current directory") as raised:
        PromptLibrary.from_yaml("datasets/demo/prompts.yaml")
    message = str(raised.value)
    assert str(tmp_path / "datasets" / "demo" / "prompts.yaml") in message
    assert "--model.prompt_library /abs/path/prompts.yaml" in message


def test_the_fallback_warning_names_the_cli_option() -> None:
    """A category without prompts: the warning says `--model.prompt_library PATH`, not a Python call."""
    from anomalib_promptmad.prompts import library

    library._WARNED_FALLBACKS.discard(library._normalise_name("gizmo_issue14"))
    library._fallback_prompts.cache_clear()
    with pytest.warns(UserWarning, match=r"--model\.prompt_library PATH") as warned:
        PromptLibrary.default().prompts_for("gizmo_issue14")
    assert "PromptLibrary.from_yaml(path)" not in str(warned[0].message)


def test_promptmad_demo_data_names_its_own_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A non-empty root: the command-line tool tells the user about `--overwrite`."""
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(SystemExit) as raised:
        demo_data_main(["--root", str(tmp_path)])
    assert raised.value.code == 2
    assert "promptmad-demo-data --overwrite" in capsys.readouterr().err
