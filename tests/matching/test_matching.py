# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Prompt matching: anomalib's coreset rule, the per-category patch bank, prompt retrieval."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anomalib.models.components import KCenterGreedy

from anomalib_promptmad.matching import PatchBank, PatchEmbedding, greedy_coreset_indices


@pytest.mark.parametrize(("count", "dim", "ratio", "block_size"), [(1500, 24, 0.1, 64), (2500, 96, 0.04, 512)])
def test_coreset_selects_the_indices_anomalib_selects(count: int, dim: int, ratio: float, block_size: int) -> None:
    generator = torch.Generator().manual_seed(count)
    # clustered points, as patch features are: blocks then really are skipped
    centres = torch.randn(12, dim, generator=generator) * 5
    embedding = centres[torch.randint(12, (count,), generator=generator)] + torch.randn(count, dim, generator=generator)
    torch.manual_seed(7)
    np.random.seed(7)  # anomalib's projection draws from numpy's global state as well as torch's
    expected = KCenterGreedy(embedding, ratio).select_coreset_idxs()
    torch.manual_seed(7)
    np.random.seed(7)
    assert greedy_coreset_indices(embedding, ratio, block_size=block_size, progress=False) == expected


def test_coreset_refuses_an_empty_selection() -> None:
    with pytest.raises(ValueError, match="sampling_ratio"):
        greedy_coreset_indices(torch.randn(10, 4), 0.01, progress=False)


def _bank_of(embeddings: list[torch.Tensor]) -> PatchBank:
    bank = PatchBank(chunk_size=7)  # several chunks: the chunked minimum is exercised
    bank.set_banks([embedding.permute(0, 2, 3, 1).flatten(0, 2) for embedding in embeddings])
    return bank


def test_matching_is_zero_on_a_bank_image_and_peaks_where_a_copy_was_altered() -> None:
    generator = torch.Generator().manual_seed(0)
    normal = torch.rand(3, 16, 6, 6, generator=generator)
    bank = _bank_of([normal, torch.rand(2, 16, 6, 6, generator=generator)])
    category = torch.zeros(1, dtype=torch.long)
    # exactly zero: the distance is measured to the chosen patch, not through |q|^2 - 2 q.p + |p|^2
    assert torch.equal(bank(normal[1:2], category), torch.zeros(1, 1, 6, 6))
    altered = normal[1:2].clone()
    altered[..., 4, 2] += 3.0
    distance = bank(altered, category)
    assert distance.flatten().argmax().item() == 4 * 6 + 2
    others = distance.flatten().clone()
    others[4 * 6 + 2] = 0
    assert distance[0, 0, 4, 2] > 10 * others.max().clamp_min(1e-3)


def test_matching_searches_only_the_images_own_category() -> None:
    generator = torch.Generator().manual_seed(1)
    first, second = torch.rand(2, 8, 4, 4, generator=generator), torch.rand(2, 8, 4, 4, generator=generator)
    bank = _bank_of([first, second])
    bank.patches[1] = torch.nan  # poisoned: any read of category 1's bank would show
    distance = bank(torch.cat([second[:1], first[:1]]), torch.tensor([0, 0]))
    assert torch.isfinite(distance).all()
    assert torch.allclose(distance[1], torch.zeros(1, 4, 4), atol=1e-3)  # its own bank holds it
    assert bool((distance[0] > 0.05).all())  # the other category's bank would have held it
    assert not torch.isfinite(bank(first[:1], torch.tensor([1]))).all()


def test_bank_memory_and_padding() -> None:
    bank = PatchBank()
    bank.set_banks([torch.rand(5, 3), torch.rand(2, 3)])
    assert bank.memory_bytes == [5 * 3 * 4, 2 * 3 * 4]
    assert torch.isinf(bank.squared_norms[1, 2:]).all()
    with pytest.raises(ValueError, match="non-empty"):
        bank.set_banks([torch.rand(0, 3)])


def test_patch_embedding_aggregates_and_aligns_levels() -> None:
    embedding = PatchEmbedding([1, 2], channels=[3, 4, 5], strides=[4, 8, 16])
    levels = [torch.rand(2, 3, 16, 16), torch.rand(2, 4, 8, 8), torch.rand(2, 5, 4, 4)]
    output = embedding(levels)
    assert output.shape == (2, 9, 8, 8)
    assert embedding.out_channels == 9 and embedding.stride == 8
    # the finest chosen level is its own 3 x 3 neighbourhood mean, at its own grid
    assert torch.allclose(output[:, :4], torch.nn.functional.avg_pool2d(levels[1], 3, stride=1, padding=1))
