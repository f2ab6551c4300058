# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Several categories of a custom folder tree as one datamodule (anomalib's ``FolderDataset`` per category).

Example:
    >>> from anomalib_promptmad.data import MultiClassFolder
    >>> datamodule = MultiClassFolder(  # doctest: +SKIP
    ...     root="datasets/parts", normal_dir="ok", normal_test_dir="test/ok", abnormal_dir="test/nok", mask_dir=None
    ... )
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.datasets.image.folder import FolderDataset
from anomalib.data.utils import Split

from anomalib_promptmad.data.datamodule import MultiClassDataModule
from anomalib_promptmad.infrastructure.registration import publish

__all__ = ["MultiClassFolder"]

_FOLDER_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class MultiClassFolder(MultiClassDataModule):
    """Several categories of a custom folder tree as one dataset (anomalib's ``FolderDataset`` per category).

    Each category folder holds the same sub-paths, relative to ``<root>/<category>``::

        <root>/<category>/<normal_dir>/*            normal training images
        <root>/<category>/<normal_test_dir>/*       normal test images (optional)
        <root>/<category>/<abnormal_dir>/*          anomalous test images (optional)
        <root>/<category>/<mask_dir>/*              their masks, same stems, same order (optional)

    Sub-paths may be glob patterns matching several folders (``"test/*"``); folders matched by the
    normal patterns are never taken as abnormal or mask folders. The defaults describe the MVTec
    layout. The category of a sample is the first folder below ``root``
    (:meth:`category_of`, or ``category_from_path(path, root=datamodule.root)``); models that read the
    category from ``image_path`` alone (PromptMAD) need the MVTec layout,
    ``<category>/{train,test}/<type>/<file>``, which the defaults give.

    Args:
        root (str | Path | Sequence[str | Path]): Folder with one sub-folder per category, or several such
            folders (a category found in two roots, or in none, is an error).
        categories (Sequence[str] | str): Categories, or ``"all"`` for every sub-folder whose
            ``normal_dir`` holds images. Defaults to ``"all"``.
        normal_dir (str | Sequence[str]): Normal training images. Defaults to ``"train/good"``.
        abnormal_dir (str | Sequence[str] | None): Anomalous test images. Defaults to ``"test/*"``.
        normal_test_dir (str | Sequence[str] | None): Normal test images; where none match,
            ``test_split_ratio`` of the training normals are used. Defaults to ``"test/good"``.
        mask_dir (str | Sequence[str] | None): Masks of the anomalous images (omit for classification).
            Defaults to ``"ground_truth/*"``.
        extensions (Sequence[str]): Image file extensions. Defaults to common image formats.
        **kwargs (Any): The settings shared by the multi-class datamodules (batch sizes, workers,
            augmentations, splits, seed, ``validate_files``), documented in
            :class:`~anomalib_promptmad.data.datamodule.MultiClassDataModule`.

    Raises:
        FileNotFoundError: If ``root`` is missing or no category folder has images in ``normal_dir``.
        ValueError: If a requested category does not exist or its masks do not match its images.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        categories: Sequence[str] | str = "all",
        normal_dir: str | Sequence[str] = "train/good",
        abnormal_dir: str | Sequence[str] | None = "test/*",
        normal_test_dir: str | Sequence[str] | None = "test/good",
        mask_dir: str | Sequence[str] | None = "ground_truth/*",
        extensions: Sequence[str] = _FOLDER_IMAGE_EXTENSIONS,
        **kwargs: Any,
    ) -> None:
        self.normal_dir = _as_patterns(normal_dir)
        self.abnormal_dir = _as_patterns(abnormal_dir)
        self.normal_test_dir = _as_patterns(normal_test_dir)
        self.mask_dir = _as_patterns(mask_dir)
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.normal_dir:
            msg = "MultiClassFolder: normal_dir must name at least one sub-folder, e.g. 'train/good'."
            raise ValueError(msg)
        super().__init__(root=root, categories=categories, **kwargs)

    @property
    def layout(self) -> str:
        """Folder layout given by the sub-path options."""
        return f"'<root>/<category>/{{{', '.join(self.normal_dir)}}}/<image>'"

    def _folders(self, category_dir: Path) -> dict[str, list[Path]]:
        """Sub-path patterns expanded to the existing folders of one category (non-empty ones only)."""

        def expand(patterns: Sequence[str], exclude: Sequence[Path] = ()) -> list[Path]:
            matches = {m for pattern in patterns for m in category_dir.glob(pattern) if m.is_dir()}
            return sorted(m for m in matches - set(exclude) if self._count_images(m))

        normal = expand(self.normal_dir)
        normal_test = expand(self.normal_test_dir, exclude=normal)
        return {
            "normal": normal,
            "normal_test": normal_test,
            "abnormal": expand(self.abnormal_dir, exclude=[*normal, *normal_test]),
            "mask": expand(self.mask_dir, exclude=[*normal, *normal_test]),
        }

    def _count_images(self, folder: Path) -> int:
        # Recursive, as anomalib's FolderDataset reads sub-folders too.
        return sum(p.suffix.lower() in self.extensions for p in folder.rglob("*") if p.is_file())

    def _find_categories(self, root: Path) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for folder in self._category_dirs(root):
            dirs = self._folders(folder)
            if not dirs["normal"]:
                found[folder.name] = f"no images in {', '.join(self.normal_dir)}"
                continue
            n_abnormal = sum(self._count_images(d) for d in dirs["abnormal"])
            n_masks = sum(self._count_images(d) for d in dirs["mask"])
            if dirs["mask"] and n_masks != n_abnormal:
                found[folder.name] = f"{n_abnormal} anomalous images but {n_masks} masks"
                continue
            found[folder.name] = None
        return found

    def _load_category(self, category: str, split: Split) -> AnomalibDataset:
        # absolute: anomalib joins relative sub-folders to the *resolved* root, which a relative root (or a
        # symbolic link) is not, so relative folder paths would be looked up below the wrong folder
        category_root = Path(os.path.abspath(self.category_roots[category] / category))
        dirs = self._folders(category_root)
        return FolderDataset(
            name=category,
            root=category_root,
            normal_dir=dirs["normal"],
            abnormal_dir=dirs["abnormal"] or None,
            normal_test_dir=dirs["normal_test"] or None,
            mask_dir=dirs["mask"] or None,
            split=split,
            extensions=self.extensions,
        )


def _as_patterns(value: str | Sequence[str] | None) -> list[str]:
    """Sub-path option -> list of patterns (``None`` -> empty)."""
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [str(value)]
    return [str(v) for v in value]


# Short name for the stock CLI (``--data MultiClassFolder``), also when anomalib was imported by our own code.
publish(MultiClassFolder, "anomalib.data")
