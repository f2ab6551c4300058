# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Training-set shuffling that a resumed run reproduces: the order depends only on the run seed and the epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from anomalib_promptmad.infrastructure.training_guards import run_seed

__all__ = ["EpochShuffleSampler"]


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch, drawn from ``(run seed, epoch)`` when iteration starts.

    Args:
        length: Number of samples.
        epoch: Returns the current epoch (read at each ``iter()``: Lightning creates a resumed run's first
            iterator before it calls ``set_epoch``).
    """

    def __init__(self, length: int, epoch: Callable[[], int]) -> None:
        self.length = length
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((run_seed() * 1_000_003 + self.epoch()) % 2**63)
        return iter(torch.randperm(self.length, generator=generator).tolist())
