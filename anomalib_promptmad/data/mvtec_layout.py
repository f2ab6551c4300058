# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Checks of one category folder against the MVTec AD layout, with a message that says what is missing.

Layout (as anomalib's ``MVTecAD``)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/{good,<defect>}/*.png
    <root>/<category>/ground_truth/<defect>/<name>_mask.png
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anomalib.data.datasets.image.mvtecad import IMG_EXTENSIONS

__all__ = ["mvtec_category_problem"]


def mvtec_category_problem(folder: Path) -> str | None:
    """What keeps ``folder`` from being an MVTec-layout category, or ``None`` when it is one.

    Args:
        folder: The category folder, ``<root>/<category>``.

    Returns:
        ``None``, or the first problem found: no training or test images, or a defect folder whose images
        and masks differ in number (naming up to five images without a mask).
    """
    if not _has_images(folder / "train" / "good", IMG_EXTENSIONS):
        return "no images in train/good"
    test = folder / "test"
    if not test.is_dir() or not any(_has_images(d, IMG_EXTENSIONS) for d in test.iterdir()):
        return "no images in test/<type>"
    for defect in sorted(d for d in test.iterdir() if d.is_dir() and d.name != "good"):
        n_images = sum(p.suffix in IMG_EXTENSIONS for p in defect.iterdir())
        masks = folder / "ground_truth" / defect.name
        n_masks = sum(p.suffix in IMG_EXTENSIONS for p in masks.iterdir()) if masks.is_dir() else 0
        if n_images != n_masks:
            problem = f"{n_images} images in test/{defect.name} but {n_masks} masks in ground_truth/{defect.name}"
            mask_stems = {p.stem for p in masks.iterdir() if p.suffix in IMG_EXTENSIONS} if masks.is_dir() else set()
            unmatched = sorted(
                p.name
                for p in defect.iterdir()
                if p.suffix in IMG_EXTENSIONS and not {p.stem, f"{p.stem}_mask"} & mask_stems
            )
            if unmatched:
                # name the files: a count alone sends the user searching through the folder
                shown = ", ".join(f"test/{defect.name}/{name}" for name in unmatched[:5])
                problem += (
                    f"; without a mask: {shown}{' ...' if len(unmatched) > 5 else ''} (add "
                    f"ground_truth/{defect.name}/<name>_mask.png for each, or move the image out of test/)"
                )
            return problem
    return None


def _has_images(folder: Path, extensions: Sequence[str]) -> bool:
    return folder.is_dir() and any(p.suffix in extensions for p in folder.iterdir())
