# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The ``training_precision`` option: bf16 autocast of the training forward, ``auto`` only where supported."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from anomalib_promptmad.infrastructure import precision
from anomalib_promptmad.infrastructure.precision import resolve_training_precision


def _batch(count: int = 2, size: int = 64) -> Any:
    """A training batch of smooth images of one category (the MVTec path layout)."""
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, size)
    images = (0.5 * ramp.view(1, 1, -1, 1) + 0.3 * ramp.view(1, 1, 1, -1)).expand(count, 3, size, size)
    images = (images + 0.1 * torch.rand(count, 3, size, size, generator=generator)).clamp(0, 1)
    paths = [f"root/disc/train/good/{index:03d}.png" for index in range(count)]
    return SimpleNamespace(image=images, image_path=paths)


def _step(make_model: Callable[..., Any], setting: str) -> tuple[Any, torch.Tensor, list[torch.dtype]]:
    model = make_model(categories=["disc"], training_precision=setting, feature_cache_mb=0)
    model.setup("fit")
    model.on_fit_start()
    dtypes: list[torch.dtype] = []
    # what the reconstruction transformer's linear layers compute in
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
        for module in model.model.reconstructor.modules()
        if isinstance(module, torch.nn.Linear)
    ]
    model.train()
    loss = model.training_step(_batch(), 0)["loss"]
    for hook in hooks:
        hook.remove()
    return model, loss, dtypes


def test_bf16_training_step_runs_in_bf16_and_gives_a_finite_fp32_loss(make_model: Callable[..., Any]) -> None:
    model, loss, dtypes = _step(make_model, "bf16")
    assert model._training_dtype == torch.bfloat16  # noqa: SLF001
    assert torch.bfloat16 in dtypes
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_fp32_training_step_stays_fp32(make_model: Callable[..., Any]) -> None:
    _, loss, dtypes = _step(make_model, "fp32")
    assert dtypes and set(dtypes) == {torch.float32}
    assert torch.isfinite(loss)


def test_auto_picks_fp32_where_the_cpu_has_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert resolve_training_precision("auto", "cpu") is None
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert resolve_training_precision("auto", "cpu") == torch.bfloat16
    assert resolve_training_precision("fp32", "cpu") is None
    assert resolve_training_precision("bf16", "cpu") == torch.bfloat16


def test_cpu_capability_probe_reads_torch_isa_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert precision.cpu_supports_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert precision.cpu_supports_bf16() is True


def test_unknown_training_precision_is_refused(make_model: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="training_precision"):
        make_model(categories=["disc"], training_precision="fp16")
