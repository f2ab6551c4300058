# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The fixed test images of the side-by-side figure, and each model's anomaly maps of them.

Every job picks the same images: per category, the first ``n`` defective test images in path order
(a category without defective images contributes its first image). The job stores, at a small size, the
image, its ground-truth mask and the model's anomaly map in ``maps.npz`` beside its result, so that the
report assembles the figure without any model.

The stored map is the model's post-processed ``anomaly_map`` (``module(image)``): anomalib's
post-processors put each model's own validation threshold at 0.5, so heat maps of different models
share one colour scale with the same meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_promptmad.infrastructure.atomic_write import write_atomic

__all__ = ["MapSample", "collect_samples", "load_samples", "save_samples", "select_samples"]


@dataclass(frozen=True)
class MapSample:
    """One test image with its mask and one model's anomaly map, all ``size x size``.

    Attributes:
        image_path: Path of the test image (the key that matches samples of different models).
        category: Its category.
        image: ``(S, S, 3)`` uint8.
        mask: ``(S, S)`` uint8 (1 = defect).
        anomaly_map: ``(S, S)`` float32, post-processed (0.5 = the model's threshold).
    """

    image_path: str
    category: str
    image: np.ndarray
    mask: np.ndarray
    anomaly_map: np.ndarray


def select_samples(samples: Any, per_category: int) -> list[int]:
    """Positions (in ``samples``) of the figure's images.

    Args:
        samples: A multi-class dataset's ``samples`` table (``image_path``, ``label_index``, ``category``).
        per_category: Defective images per category.

    Returns:
        Positions, by category then path.
    """
    if per_category <= 0:
        return []
    table = samples.reset_index(drop=True)
    positions: list[int] = []
    for category in sorted(table["category"].unique()):
        rows = table[table["category"] == category].sort_values("image_path")
        defective = rows[rows["label_index"] == 1]
        chosen = defective if len(defective) else rows
        positions.extend(int(position) for position in chosen.index[:per_category])
    return positions


def collect_samples(module: torch.nn.Module, dataset: Any, positions: Sequence[int], size: int) -> list[MapSample]:
    """Run ``module`` on the chosen test images and keep image, mask and anomaly map at ``size``.

    Args:
        module: The trained anomalib model.
        dataset: The test dataset (its items carry ``image``, ``gt_mask``, ``image_path``).
        positions: From :func:`select_samples`.
        size: Side of the stored arrays.

    Returns:
        One sample per position.
    """
    categories = dataset.samples.reset_index(drop=True)["category"]
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    module.eval()
    out: list[MapSample] = []
    with torch.no_grad():
        for position in positions:
            item = dataset[position]
            image = item.image.float()
            prediction = module(image.unsqueeze(0).to(device))
            anomaly_map = prediction.anomaly_map
            if anomaly_map is None:
                anomaly_map = torch.zeros(1, *image.shape[-2:])
            mask = item.gt_mask if item.gt_mask is not None else torch.zeros(image.shape[-2:])
            out.append(
                MapSample(
                    image_path=str(item.image_path),
                    category=str(categories.iloc[position]),
                    image=(_resize(image, size, "area").permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy(),
                    mask=(_resize(torch.as_tensor(mask).float(), size, "nearest")[0] > 0.5).byte().numpy(),
                    anomaly_map=_resize(anomaly_map.detach().float().cpu(), size, "bilinear")[0].numpy(),
                )
            )
    return out


def save_samples(path: str | Path, samples: Sequence[MapSample]) -> Path:
    """Write samples to an ``.npz`` file atomically (no pickled objects)."""

    def write(file: Any) -> None:
        np.savez_compressed(
            file,
            image_paths=np.array([s.image_path for s in samples], dtype=str),
            categories=np.array([s.category for s in samples], dtype=str),
            images=np.stack([s.image for s in samples]) if samples else np.zeros((0, 1, 1, 3), np.uint8),
            masks=np.stack([s.mask for s in samples]) if samples else np.zeros((0, 1, 1), np.uint8),
            maps=np.stack([s.anomaly_map for s in samples]).astype(np.float16)
            if samples
            else np.zeros((0, 1, 1), np.float16),
        )

    return write_atomic(path, write)


def load_samples(path: str | Path) -> list[MapSample]:
    """Read samples written by :func:`save_samples`."""
    with np.load(path, allow_pickle=False) as data:
        return [
            MapSample(
                image_path=str(data["image_paths"][index]),
                category=str(data["categories"][index]),
                image=data["images"][index],
                mask=data["masks"][index],
                anomaly_map=data["maps"][index].astype(np.float32),
            )
            for index in range(len(data["image_paths"]))
        ]


def _resize(tensor: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """``(C, H, W)`` or ``(H, W)`` or ``(1, 1, H, W)`` -> ``(C, size, size)``."""
    tensor = tensor.reshape(-1, *tensor.shape[-2:])
    resized = F.interpolate(tensor.unsqueeze(0), size=(size, size), mode=mode)
    return resized[0]
