# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The ``training_precision`` option: bf16 autocast around the training forward pass where it pays.

PromptMAD's training step is dominated by the transformer's matrix products. On CPUs with AMX or
AVX512-BF16 those run several times faster in bfloat16, and ``torch.autocast("cpu", dtype=torch.bfloat16)``
made a PromptMAD-sized step (forward, backward, AdamW) 1.45x faster on the development machine
(``benchmarks/training_precision.py`` measures it for the CPU config). Elsewhere bf16 is emulated and slower.

* ``"fp32"``: no autocast (the default: quality first; bf16 is opt-in per config).
* ``"bf16"``: bf16 autocast on any device (CPU or CUDA).
* ``"auto"``: bf16 on CUDA devices that support it and on CPUs with AMX or AVX512-BF16, fp32 elsewhere.

Only the network's forward pass is autocast: weights, gradients and AdamW's moments stay fp32 (as with
Lightning's ``precision="bf16-mixed"``, which :func:`~anomalib_promptmad.reliability.check_precision`
accepts), synthesis runs in fp32, and the losses are computed in fp32 from the outputs. Pure half precision
(``"bf16-true"``) stays refused. With ``Trainer(precision="bf16-mixed")`` Lightning already autocasts the
whole step; the option then changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

__all__ = ["TRAINING_PRECISIONS", "cpu_supports_bf16", "resolve_training_precision", "training_autocast"]

logger = logging.getLogger(__name__)

TRAINING_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AMX tiles or AVX512-BF16).

    ``torch.backends.cpu.get_cpu_capability()`` only says ``"AVX512"``, which includes CPUs without bf16
    instructions; torch's (private) ISA probes answer the real question, and their absence means "no".
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    for probe in probes:
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and bool(check()):
                return True
        except RuntimeError:  # a probe that cannot run on this build
            continue
    return False


def resolve_training_precision(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype of a ``training_precision`` setting on a device type, or ``None`` for fp32.

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``.
        device_type: ``"cpu"``, ``"cuda"``, ...

    Raises:
        ValueError: For an unknown setting.
    """
    if precision not in TRAINING_PRECISIONS:
        msg = f"training_precision must be one of {list(TRAINING_PRECISIONS)}, got {precision!r}"
        raise ValueError(msg)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device_type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else None
    if device_type == "cuda":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    return None


@contextlib.contextmanager
def training_autocast(dtype: torch.dtype | None, device_type: str) -> Iterator[None]:
    """``torch.autocast(device_type, dtype)`` if ``dtype`` is set, else nothing (the ambient state holds)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device_type, dtype=dtype):
        yield
