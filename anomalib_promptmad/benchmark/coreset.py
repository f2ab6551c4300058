# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Patchcore's coreset in benchmark jobs: anomalib's greedy selection, the same indices, in far less time.

anomalib's Patchcore subsamples its memory bank in ``PatchcoreModel.subsample_embedding`` with
``KCenterGreedy(embedding=..., sampling_ratio=...).sample_coreset()``, a name that
``anomalib.models.image.patchcore.torch_model`` imports at module level. Its selection updates the distance of
every patch at every step: a 10 % coreset of one MVTec category (about 214k patches) takes hours on 2 CPU
cores. :func:`~anomalib_promptmad.matching.greedy_coreset_indices` makes the same choices (same projection,
same random start, same farthest point, same ties) and skips the updates that cannot change anything: minutes
for the same coreset, and the same memory bank.

:func:`use_exact_fast_coreset` gives one Patchcore model that selection. It wraps that model's own
``subsample_embedding`` so that, for the duration of the call only, the module's ``KCenterGreedy`` name is
:class:`ExactFastKCenterGreedy`; anomalib's method body runs unchanged. Nothing is replaced when the package
is imported, and other models (in the job's process or anywhere else) keep anomalib's selection. Benchmark
jobs do this for Patchcore unless the config sets ``exact_fast_coreset: false``, and record each selection.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["CORESET_SELECTION", "ExactFastKCenterGreedy", "coreset_selections", "use_exact_fast_coreset"]

# The value of a job's ``extra["coreset_selection"]`` (and of each record's ``implementation``).
CORESET_SELECTION = "exact_fast"


class ExactFastKCenterGreedy:
    """Drop-in for anomalib's ``KCenterGreedy`` (same arguments, same methods, same indices).

    On a 2-D CPU embedding it selects with :func:`~anomalib_promptmad.matching.greedy_coreset_indices`. Anything
    else goes to anomalib's own class: an embedding of another shape is flattened there without a projection,
    and on an accelerator anomalib draws its start point from that device's generator (which this selection
    cannot reproduce) and is fast there anyway.

    Args:
        embedding: ``(N, D)`` patch features (Patchcore's memory bank).
        sampling_ratio: Coreset size as a share of ``N`` (``int(N * sampling_ratio)`` points).
        record: A list that gets one entry per selection (implementation, points, size, seconds).
    """

    def __init__(
        self, embedding: torch.Tensor, sampling_ratio: float, record: list[dict[str, Any]] | None = None
    ) -> None:
        self.embedding = embedding
        self.sampling_ratio = sampling_ratio
        self.record = record

    def select_coreset_idxs(self) -> list[int]:
        """Indices of the coreset points, in selection order (those of anomalib's ``KCenterGreedy``)."""
        from anomalib.models.components import KCenterGreedy

        from anomalib_promptmad.matching import greedy_coreset_indices

        start = time.perf_counter()
        if self.embedding.ndim == 2 and self.embedding.device.type == "cpu":
            # no progress bar: jobs write to a log file; one line below says what was selected and how fast
            indices = greedy_coreset_indices(self.embedding, self.sampling_ratio, progress=False)
            implementation = CORESET_SELECTION
        else:
            indices = KCenterGreedy(embedding=self.embedding, sampling_ratio=self.sampling_ratio).select_coreset_idxs()
            implementation = "anomalib"
        seconds = time.perf_counter() - start
        entry = {
            "implementation": implementation,
            "points": int(self.embedding.shape[0]),
            "selected": len(indices),
            "sampling_ratio": float(self.sampling_ratio),
            "seconds": seconds,
        }
        if self.record is not None:
            self.record.append(entry)
        print(
            f"coreset: {entry['selected']} of {entry['points']} patches selected in {seconds:.1f} s "
            f"({'exact fast greedy selection' if implementation == CORESET_SELECTION else 'anomalib KCenterGreedy'})",
            flush=True,
        )
        return indices

    def sample_coreset(self) -> torch.Tensor:
        """The selected rows of the embedding (what anomalib's ``KCenterGreedy.sample_coreset`` returns)."""
        return self.embedding[self.select_coreset_idxs()]


class _ExactFastSubsampling:
    """A Patchcore torch model's own ``subsample_embedding``, run with :class:`ExactFastKCenterGreedy`."""

    def __init__(self, subsample_embedding: Any, module: Any) -> None:
        functools.update_wrapper(self, subsample_embedding)
        self._subsample_embedding = subsample_embedding
        self._module = module
        self.selections: list[dict[str, Any]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        anomalib_class = self._module.KCenterGreedy
        # for this call only: anomalib's method looks the name up in its module when it runs
        self._module.KCenterGreedy = functools.partial(ExactFastKCenterGreedy, record=self.selections)
        try:
            return self._subsample_embedding(*args, **kwargs)
        finally:
            self._module.KCenterGreedy = anomalib_class


def use_exact_fast_coreset(model: nn.Module) -> list[dict[str, Any]]:
    """Make one Patchcore model select its memory-bank coreset with the exact fast greedy selection.

    Args:
        model: anomalib's ``Patchcore`` (Lightning module) or its ``PatchcoreModel``.

    Returns:
        The list that receives one record per coreset selection of this model (also
        :func:`coreset_selections`).

    Raises:
        TypeError: ``model`` is not a Patchcore model.
        RuntimeError: anomalib's Patchcore no longer selects through a module-level ``KCenterGreedy``.
    """
    from anomalib.models.image.patchcore import torch_model as patchcore_torch_model

    torch_model = getattr(model, "model", model)
    if not isinstance(torch_model, patchcore_torch_model.PatchcoreModel):
        msg = f"the exact fast coreset is for anomalib's Patchcore, got {type(model).__name__}"
        raise TypeError(msg)
    if not hasattr(patchcore_torch_model, "KCenterGreedy"):
        msg = (
            f"{patchcore_torch_model.__name__} has no KCenterGreedy any more (another anomalib version?): "
            "set exact_fast_coreset: false in the benchmark config"
        )
        raise RuntimeError(msg)
    current = torch_model.subsample_embedding
    if isinstance(current, _ExactFastSubsampling):
        return current.selections
    wrapper = _ExactFastSubsampling(current, patchcore_torch_model)
    # an instance attribute: this model only, never the class
    torch_model.subsample_embedding = wrapper
    return wrapper.selections


def coreset_selections(model: nn.Module) -> list[dict[str, Any]] | None:
    """The selections recorded since :func:`use_exact_fast_coreset` was applied to ``model``, else ``None``."""
    torch_model = getattr(model, "model", model)
    wrapper = getattr(torch_model, "subsample_embedding", None)
    return wrapper.selections if isinstance(wrapper, _ExactFastSubsampling) else None
