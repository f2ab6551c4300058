# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Cost of a model: inference throughput of its forward pass and the peak memory of its job.

Throughput is the anomalib module's ``forward`` (pre-processing, network, post-processing: the path that
``anomalib export`` traces) in eval mode under ``torch.no_grad()``, on real test images, after untimed
warm-up passes, timed by :func:`~anomalib_promptmad.infrastructure.timing.calls_per_second`. Data
loading is not included: it depends on the disk, not on the model.

Peak memory is the job process's peak resident set size (``ru_maxrss``): every job runs in a fresh
process, so it is that one model's training + testing peak, including the Python/torch baseline
(roughly 0.5 GB). Dataloader worker processes are not included.
"""

from __future__ import annotations

import resource
import sys

import torch

from anomalib_promptmad.infrastructure.timing import calls_per_second

__all__ = ["images_per_second", "peak_memory_mib"]


def images_per_second(
    module: torch.nn.Module,
    images: torch.Tensor,
    batch_size: int,
    warmup: int = 2,
    min_iterations: int = 3,
    min_seconds: float = 2.0,
) -> float:
    """Images per second of ``module(batch)`` at ``batch_size``.

    Args:
        module: The model (put in eval mode here).
        images: ``(N, 3, H, W)`` images; repeated when ``N < batch_size``.
        batch_size: Images per forward pass.
        warmup: Untimed passes first.
        min_iterations: Timed passes at least.
        min_seconds: Time at least this long.

    Returns:
        Throughput in images per second.
    """
    if len(images) == 0:
        msg = "images_per_second needs at least one image"
        raise ValueError(msg)
    repeats = -(-batch_size // len(images))
    batch = images.repeat(repeats, 1, 1, 1)[:batch_size].to(_device(module))
    module.eval()
    with torch.no_grad():
        rate = calls_per_second(lambda: module(batch), warmup, min_iterations, min_seconds, batch.device)
    return rate * batch_size


def peak_memory_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _device(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
