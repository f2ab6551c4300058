# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Several categories' anomalib datasets as one, with a ``category`` column in the sample table.

Every sample is loaded by the category's own anomalib dataset class, so batches stay ordinary anomalib
``ImageBatch`` objects and every built-in anomalib model trains on them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from anomalib.data import DatasetItem
from anomalib.data.datasets.base.image import AnomalibDataset

__all__ = ["MultiClassDataset"]


class MultiClassDataset(AnomalibDataset):
    """Concatenation of per-category anomalib datasets, with a ``category`` column in ``samples``.

    Args:
        datasets (Mapping[str, AnomalibDataset]): Category name -> dataset of that category.
        name (str): Name of the dataset.

    Raises:
        ValueError: If ``datasets`` is empty or the categories mix classification and segmentation.
    """

    def __init__(self, datasets: Mapping[str, AnomalibDataset], name: str) -> None:
        super().__init__()
        self._name = name
        if not datasets:
            msg = "MultiClassDataset needs at least one category."
            raise ValueError(msg)
        tasks = {category: dataset.samples.attrs.get("task") for category, dataset in datasets.items()}
        if len(set(tasks.values())) > 1:
            msg = (
                f"Categories mix tasks {tasks}: either every category has ground-truth masks for its "
                "anomalous images or none has."
            )
            raise ValueError(msg)
        frames = [dataset.samples.assign(category=category) for category, dataset in datasets.items()]
        samples = pd.concat(frames, ignore_index=True)
        samples.attrs["task"] = next(iter(tasks.values()))
        self.samples = samples

    @property
    def name(self) -> str:
        """Name of the dataset."""
        return self._name

    def __getitem__(self, index: int) -> DatasetItem:
        """The sample at ``index``; a file that fails to load is named in the error.

        The datamodules check every file's header and end before training
        (:mod:`anomalib_promptmad.data.validation`); this catches what only a full decode finds (damaged
        pixel data inside an intact file) or a file changed since, with the path that PIL's own message lacks.
        """
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError) as error:
            row = self.samples.iloc[index]
            mask = f" (mask {row.mask_path})" if isinstance(row.get("mask_path"), str) else ""
            msg = f"cannot load sample {index}: image {row.image_path}{mask}: {error}. Replace or remove the file."
            raise OSError(msg) from error

    @property
    def categories(self) -> list[str]:
        """Sorted categories present in ``samples``."""
        return sorted(self.samples["category"].unique())
