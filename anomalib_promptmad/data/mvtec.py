# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Several MVTec AD categories (or any data in the MVTec layout) as one datamodule.

Example:
    >>> from anomalib_promptmad.data import MultiClassMVTecAD
    >>> datamodule = MultiClassMVTecAD(root="datasets/MVTecAD", categories=["bottle", "pill"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.datasets.image.mvtecad import MVTecADDataset
from anomalib.data.utils import Split
from anomalib.utils.path import resolve_dataset_root

from anomalib_promptmad.data.datamodule import MultiClassDataModule
from anomalib_promptmad.data.mvtec_layout import mvtec_category_problem
from anomalib_promptmad.infrastructure.registration import publish

__all__ = ["MultiClassMVTecAD"]


class MultiClassMVTecAD(MultiClassDataModule):
    """Several MVTec AD categories (or any data in the MVTec layout) as one dataset.

    Expected layout (as anomalib's ``MVTecAD``, checked by
    :func:`~anomalib_promptmad.data.mvtec_layout.mvtec_category_problem`)::

        <root>/<category>/train/good/*.png
        <root>/<category>/test/{good,<defect>}/*.png
        <root>/<category>/ground_truth/<defect>/<name>_mask.png

    Args:
        root (str | Path | Sequence[str | Path] | None): Dataset root, or several roots whose categories are
            trained together (e.g. ``[./datasets/MVTecAD, ./datasets/MVTec3D-RGB]``; a category found in two
            roots, or in none, is an error); ``None`` is anomalib's datasets folder + ``MVTecAD``.
            Defaults to ``"./datasets/MVTecAD"``.
        categories (Sequence[str] | str): Categories, or ``"all"`` for every folder under ``root`` that
            has ``train/good`` and ``test``. Defaults to ``"all"``.
        **kwargs (Any): The settings shared by the multi-class datamodules (batch sizes, workers,
            augmentations, splits, seed, ``validate_files``), documented in
            :class:`~anomalib_promptmad.data.datamodule.MultiClassDataModule`.

    Raises:
        FileNotFoundError: If ``root`` is missing or holds no category in the MVTec layout.
        ValueError: If a requested category does not exist (the message lists the available ones).

    Example:
        >>> datamodule = MultiClassMVTecAD(root="datasets/MVTecAD", categories="bottle,pill")  # doctest: +SKIP
        >>> datamodule.categories  # doctest: +SKIP
        ['bottle', 'pill']
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path] | None = "./datasets/MVTecAD",
        categories: Sequence[str] | str = "all",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            root=(
                resolve_dataset_root(root, "MVTecAD")
                if root is None or isinstance(root, str | Path)
                else [resolve_dataset_root(path, "MVTecAD") for path in root]
            ),
            categories=categories,
            **kwargs,
        )

    @property
    def layout(self) -> str:
        """MVTec layout."""
        return "'<root>/<category>/{train/good,test/<type>,ground_truth/<defect>}/<file>.png'"

    def _find_categories(self, root: Path) -> dict[str, str | None]:
        return {folder.name: mvtec_category_problem(folder) for folder in self._category_dirs(root)}

    def _load_category(self, category: str, split: Split) -> AnomalibDataset:
        return MVTecADDataset(root=self.category_roots[category], category=category, split=split)


# Short name for the stock CLI (``--data MultiClassMVTecAD``), also when anomalib was imported by our own code.
publish(MultiClassMVTecAD, "anomalib.data")
