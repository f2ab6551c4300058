# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The installed start-up hook registers PromptMAD with the stock anomalib package.

Each check runs in a fresh interpreter, because the hook acts at interpreter start-up (the
``anomalib_promptmad_registration.pth`` file installed into site-packages).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def _python(code: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_hook_is_installed_and_imports_nothing_heavy() -> None:
    out = _python(
        """
        import sys
        print('anomalib_promptmad.infrastructure.registration' in sys.modules, 'torch' in sys.modules,
              any(name.startswith('anomalib.') or name == 'anomalib' for name in sys.modules))
        """,
    )
    assert out == "True False False"


def test_hook_is_silent_when_the_package_is_gone() -> None:
    """A stale hook (package uninstalled, or an editable checkout deleted) must not break every interpreter."""
    hook = next(
        Path(path) / "anomalib_promptmad_registration.pth"
        for path in sys.path
        if (Path(path) / "anomalib_promptmad_registration.pth").is_file()
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.modules['anomalib_promptmad'] = None; exec(open({str(hook)!r}).read())",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_get_model_and_list_models_resolve_promptmad() -> None:
    out = _python(
        """
        from anomalib.models import get_model, list_models
        model = get_model("PromptMAD", backbone_weights="none", hidden_dim=32, num_encoder_layers=1,
                          num_decoder_layers=1, dim_feedforward=64, num_heads=2)
        dict_model = get_model({"class_path": "PromptMAD", "init_args": {"backbone_weights": "none",
                               "diffusion_steps": 3}})
        print(type(model).__module__, type(dict_model).__name__, dict_model.model.diffusion.steps,
              "PromptMAD" in list_models(case="pascal"))
        """,
    )
    assert out == "anomalib_promptmad.lightning_model PromptMAD 3 True"


def test_stock_cli_resolves_short_and_full_names() -> None:
    for name in ("PromptMAD", "anomalib_promptmad.PromptMAD"):
        result = subprocess.run(
            ["anomalib", "train", "--model", name, "--print_config"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert re.search(r"class_path: anomalib_promptmad(\.lightning_model)?\.PromptMAD\n", result.stdout)
        assert "diffusion_steps: 10" in result.stdout


def test_stock_cli_help_and_model_help() -> None:
    result = subprocess.run(
        ["anomalib", "train", "--model", "PromptMAD", "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run(
        ["anomalib", "train", "--model.help", "PromptMAD"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--model.use_text_prompts" in result.stdout
    assert "--model.diffusion_steps" in result.stdout


def test_benchmark_grid_builds_promptmad_and_multiclass_data(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    out = _python(
        f"""
        from anomalib_promptmad.data.demo import generate_demo_dataset
        generate_demo_dataset({str(root)!r}, image_size=64, n_train=4, n_test_good=2, n_test_defect=2)
        from anomalib.pipelines.benchmark.generator import BenchmarkJobGenerator
        args = {{"seed": 1,
                 "model": {{"class_path": "PromptMAD", "init_args": {{"backbone_weights": "none", "image_size": 64}}}},
                 "data": {{"class_path": "MultiClassMVTecAD", "init_args": {{"root": {str(root)!r}}}}}}}
        jobs = list(BenchmarkJobGenerator("cpu").generate_jobs(args, None))
        print(len(jobs), type(jobs[0].model).__name__, type(jobs[0].datamodule).__name__)
        """,
    )
    assert out == "1 PromptMAD MultiClassMVTecAD"


@pytest.mark.parametrize("module", ["anomalib_promptmad", "anomalib_promptmad.infrastructure.registration"])
def test_package_import_is_lazy(module: str) -> None:
    out = _python(f"import sys, {module}; print('torch' in sys.modules)")
    assert out == "False"
