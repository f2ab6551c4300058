# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""UniAD's neighbour mask: a token may not attend to its own neighbourhood.

Blocking the local window stops the transformer from learning an identity shortcut (copying each token
from itself and its neighbours), which would reconstruct anomalies as well as normal regions.
"""

from __future__ import annotations

import torch

__all__ = ["default_neighbour_size", "neighbour_mask"]


def default_neighbour_size(grid_size: tuple[int, int]) -> tuple[int, int]:
    """OneNIP's rule: half the token grid (7 at 224 input; the blocked window is ``2 * (n // 2) + 1``)."""
    return (grid_size[0] // 2, grid_size[1] // 2)


def neighbour_mask(grid_size: tuple[int, int], neighbour_size: tuple[int, int]) -> torch.Tensor:
    """Boolean attention mask for a row-major token grid.

    Args:
        grid_size: Token grid ``(h, w)``.
        neighbour_size: Window ``(nh, nw)``; tokens with ``|dy| <= nh // 2`` and ``|dx| <= nw // 2``
            are blocked.

    Returns:
        Bool tensor of shape ``(h * w, h * w)``; ``True`` means "may not attend" (PyTorch's convention for
        boolean ``attn_mask``).
    """
    h, w = grid_size
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    near_y = (ys[:, None] - ys[None, :]).abs() <= neighbour_size[0] // 2
    near_x = (xs[:, None] - xs[None, :]).abs() <= neighbour_size[1] // 2
    return near_y & near_x
