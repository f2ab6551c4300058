# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Precision: the ``training_precision`` option, and the Lightning precisions PromptMAD trains with.

The ``training_precision`` option is bf16 autocast around the training forward pass where it pays.

PromptMAD's training step is dominated by the transformer's matrix products. On CPUs with AMX or
AVX512-BF16 those run several times faster in bfloat16, and ``torch.autocast("cpu", dtype=torch.bfloat16)``
made a PromptMAD-sized step (forward, backward, AdamW) 1.45x faster on the development machine
(``scripts/training_precision.py`` measures it for the CPU config). Elsewhere bf16 is emulated and slower.

* ``"fp32"``: no autocast (the default: quality first; bf16 is opt-in per config).
* ``"bf16"``: bf16 autocast on any device (CPU or CUDA).
* ``"auto"``: bf16 on CUDA devices that support it and on CPUs with AMX or AVX512-BF16, fp32 elsewhere.

Only the network's forward pass is autocast: weights, gradients and AdamW's moments stay fp32 (as with
Lightning's ``precision="bf16-mixed"``, which :func:`check_precision`
accepts), synthesis runs in fp32, and the losses are computed in fp32 from the outputs. Pure half precision
(``"bf16-true"``) stays refused. With ``Trainer(precision="bf16-mixed")`` Lightning already autocasts the
whole step; the option then changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

__all__ = [
    "SUPPORTED_PRECISIONS",
    "TRAINING_PRECISIONS",
    "check_precision",
    "cpu_supports_bf16",
    "resolve_training_precision",
    "training_autocast",
]

logger = logging.getLogger(__name__)

TRAINING_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")

# Lightning precision flags PromptMAD trains with (tested: 32-true and bf16-mixed on CPU).
SUPPORTED_PRECISIONS: tuple[str, ...] = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true", "64")


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


def check_precision(precision: str | int | None) -> None:
    """Refuse Lightning precisions PromptMAD does not train correctly with.

    Args:
        precision: ``trainer.precision`` (e.g. ``"32-true"``, ``"bf16-mixed"``).

    Raises:
        ValueError: For pure half precision (``16-true``, ``bf16-true``) and unknown settings.
    """
    name = str(precision)
    if name in SUPPORTED_PRECISIONS:
        return
    msg = (
        f"PromptMAD does not train with precision={name!r}: "
        + (
            "pure half precision keeps the frozen backbone's batch-norm statistics, the feature distances and "
            "AdamW's moments in 16 bits, where the squared feature distances overflow (fp16) or lose the small "
            "differences the model learns (bf16). "
            if name in {"16-true", "16", "bf16-true", "bf16", "half"}
            else ""
        )
        + f"Use one of {list(SUPPORTED_PRECISIONS)}; 'bf16-mixed' (CPU and recent GPUs) or '16-mixed' (GPU) "
        "give the speed of half precision with full-precision weights."
    )
    raise ValueError(msg)
