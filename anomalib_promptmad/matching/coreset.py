# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Greedy k-center coreset selection: anomalib's rule, exact, with most distance updates skipped.

anomalib's :class:`~anomalib.models.components.KCenterGreedy` (Patchcore's memory-bank subsampling) projects
the embedding with ``SparseRandomProjection(eps=0.9)``, starts from a random point and then repeatedly adds
the point farthest from the selected ones, updating the distance of *every* point to the new center at
every step. For ``n`` points and ``k`` centers that is ``n * k`` distance evaluations: hours on 2 CPU cores
for a 10 % coreset of an MVTec category or two.

:func:`greedy_coreset_indices` makes the same choices and skips most of that work. Points are grouped into
spatially tight blocks (a few k-means iterations on the projected features, large clusters cut into
chunks). A block whose every point is already closer to a selected center than the new center can possibly
be (triangle inequality: ``|x - c| >= |m - c| - r`` for a block of centre ``m`` and radius ``r``) is left
untouched, since ``min(old, new)`` cannot change there. In the blocks that may change, a cheap bound
(``|x|^2 - 2 x.c + |c|^2``, one matrix-vector product, with a margin far above its float error) finds the
few points whose distance can drop; only those are recomputed, with the same ``torch.linalg.norm(x - c)``
anomalib uses. So every distance, every maximum and every tie (the lowest index wins, as in ``torch.max``)
are those of anomalib: the selected indices are equal, not just close.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> indices = greedy_coreset_indices(torch.randn(2000, 32), sampling_ratio=0.05, progress=False)
    >>> len(indices)
    100
"""

from __future__ import annotations

import torch
from anomalib.models.components.dimensionality_reduction import SparseRandomProjection
from tqdm import tqdm

__all__ = ["greedy_coreset_indices"]

# a block or point is skipped only when its lower bound beats the current distance by these margins: the
# bounds are computed in float32 and must never skip a distance that would in fact change
_SKIP_MARGIN = 1e-4
_EXPANSION_MARGIN = 1e-4  # relative to |x|^2 + |c|^2, far above float32's error of the expanded square


def _cluster_blocks(features: torch.Tensor, block_size: int, iterations: int = 6) -> list[torch.Tensor]:
    """Group point indices into tight blocks of at most ``block_size``: k-means, then cut large clusters.

    Deterministic and free of global random state (evenly spaced initial centres), so it cannot change what
    the selection draws. Patch features cluster strongly (background, edges, texture), which is what makes
    the triangle-inequality test skip most blocks.
    """
    count = features.shape[0]
    clusters = max(1, -(-count // block_size))
    centres = features[torch.linspace(0, count - 1, clusters).long()].clone()
    assignment = torch.zeros(count, dtype=torch.long)
    squared = features.pow(2).sum(1)
    for _ in range(iterations):
        for start in range(0, count, 16384):
            part = features[start : start + 16384]
            distance = squared[start : start + 16384, None] - 2 * part @ centres.T + centres.pow(2).sum(1)[None]
            assignment[start : start + 16384] = distance.argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, features)
        sizes = torch.bincount(assignment, minlength=clusters)
        occupied = sizes > 0
        centres[occupied] = sums[occupied] / sizes[occupied, None].to(features.dtype)
    order = torch.argsort(assignment, stable=True)
    blocks = []
    for members in torch.split(order, torch.bincount(assignment, minlength=clusters).tolist()):
        blocks.extend(members[start : start + block_size] for start in range(0, members.numel(), block_size))
    return [block for block in blocks if block.numel()]


def greedy_coreset_indices(
    embedding: torch.Tensor,
    sampling_ratio: float,
    block_size: int = 512,
    progress: bool = True,
) -> list[int]:
    """Indices that anomalib's ``KCenterGreedy(embedding, sampling_ratio).select_coreset_idxs()`` returns.

    Draws from torch's global random state in the same order as anomalib (the projection, then the start
    point), so under the same seed the result is identical.

    Args:
        embedding: ``(N, D)`` features.
        sampling_ratio: Coreset size as a share of ``N``; the size is ``int(N * sampling_ratio)``.
        block_size: Points per block of the distance bookkeeping (speed only; the result does not depend on it).
        progress: Show a progress bar.

    Returns:
        ``int(N * sampling_ratio)`` indices into ``embedding``, in selection order.

    Raises:
        ValueError: The ratio gives an empty coreset, or ``embedding`` is not 2-D.
    """
    if embedding.ndim != 2:
        msg = f"the coreset embedding must be (N, D), got shape {tuple(embedding.shape)}"
        raise ValueError(msg)
    count = embedding.shape[0]
    size = int(count * sampling_ratio)
    if size <= 0:
        msg = (
            f"coreset_size must be a positive integer, got {size}. "
            f"Check sampling_ratio ({sampling_ratio}) and embedding size ({count})."
        )
        raise ValueError(msg)
    features = SparseRandomProjection(eps=0.9).fit(embedding).transform(embedding)
    index = int(torch.randint(high=count, size=(1,), device=features.device).squeeze())

    blocks = _cluster_blocks(features, block_size)
    width = max(block.numel() for block in blocks)
    members = torch.full((len(blocks), width), -1, dtype=torch.long)
    for row, block in enumerate(blocks):
        members[row, : block.numel()] = block
    valid = members >= 0
    blocked = features[members.clamp_min(0)]  # (blocks, width, d); padding rows repeat point 0, never read
    blocked_squares = blocked.pow(2).sum(-1)
    centres = torch.stack([features[block].mean(0) for block in blocks])
    radius = torch.stack([
        torch.linalg.norm(features[block] - centre, dim=1).amax() for block, centre in zip(blocks, centres, strict=True)
    ])
    # padding holds -inf so that it never wins a maximum and minimum() keeps it
    distance = torch.where(valid, torch.inf, -torch.inf).to(features.dtype)
    block_max = distance.amax(1)
    where = torch.empty(count, 2, dtype=torch.long)  # point -> (block, slot)
    where[members[valid]] = torch.nonzero(valid)

    selected = [index]
    for _ in tqdm(range(size - 1), desc="Selecting coreset", disable=not progress or None, leave=False):
        center = features[index]
        bound = torch.linalg.norm(centres - center, dim=1) - radius
        active = torch.nonzero(bound <= block_max * (1 + _SKIP_MARGIN) + _SKIP_MARGIN).flatten()
        center_square = center.pow(2).sum()
        squares = blocked_squares[active]
        if active.numel() * 2 > len(blocks):  # most blocks: one product over all beats gathering them
            expanded = (blocked_squares - 2 * (blocked @ center) + center_square)[active]
        else:
            expanded = squares - 2 * (blocked[active] @ center) + center_square
        may_drop = valid[active] & (
            expanded <= distance[active].square() + _EXPANSION_MARGIN * (squares + center_square)
        )
        rows, slots = torch.nonzero(may_drop, as_tuple=True)
        if rows.numel():
            block_rows = active[rows]
            exact = torch.linalg.norm(blocked[block_rows, slots] - center, ord=2, dim=-1)
            distance[block_rows, slots] = torch.minimum(distance[block_rows, slots], exact)
            touched = block_rows.unique()
            block_max[touched] = distance[touched].amax(1)
        best = block_max.max()
        rows = torch.nonzero(block_max == best).flatten()
        candidates = members[rows][distance[rows] == best]
        index = int(candidates.min())
        block, slot = where[index].tolist()
        distance[block, slot] = 0.0
        block_max[block] = distance[block].amax()
        selected.append(index)
    return selected
