# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Derive the category of a sample from its image path.

anomalib batches carry ``image_path`` but no category name, so models and callbacks that need the
category (PromptMAD's text prompts, per-category metrics) read it from the path. Two rules:

* **MVTec layout** (no ``root`` given): ``<root>/<category>/{train,test,ground_truth}/<type>/<file>``,
  the category is the folder above ``train``/``test``. This holds for anomalib's own ``MVTecAD``
  batches, for :class:`~anomalib_promptmad.data.mvtec.MultiClassMVTecAD` and for
  :class:`~anomalib_promptmad.data.folder.MultiClassFolder` with its default sub-paths.
* **Any layout** (``root`` given): the category is the first path component below ``root``. Both
  multi-class datamodules expose ``root`` for this.

Example:
    >>> category_from_path("/data/MVTecAD/bottle/test/broken_large/000.png")
    'bottle'
    >>> category_from_path("/data/custom/screws/good/a.png", root="/data/custom")
    'screws'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import torch

__all__ = [
    "MVTEC_SPLIT_FOLDERS",
    "NO_CATEGORIES",
    "category_from_path",
    "category_indices",
    "check_known_categories",
    "datamodule_categories",
]

NO_CATEGORIES = (
    "PromptMAD needs category names: pass `categories=[...]` to PromptMAD, load a trained checkpoint, or use a "
    "datamodule that has `categories` (MultiClassMVTecAD, MultiClassFolder) or `category` (MVTecAD, Folder)."
)

# Folders that sit directly below a category folder in the MVTec layout (ground_truth holds masks).
MVTEC_SPLIT_FOLDERS: frozenset[str] = frozenset({"train", "test", "ground_truth"})


def category_from_path(image_path: str | PurePath, root: str | PurePath | None = None) -> str:
    """Return the category name encoded in an image (or mask) path.

    Args:
        image_path (str | PurePath): Path of one image, as found in ``batch.image_path``.
        root (str | PurePath | None): Dataset root holding one folder per category. When given, the
            category is the first component of ``image_path`` relative to ``root`` (any layout);
            when ``None``, the MVTec layout ``<category>/{train,test,ground_truth}/<type>/<file>``
            is required. Defaults to ``None``.

    Returns:
        str: Category name, e.g. ``"bottle"``.

    Raises:
        ValueError: If the path does not follow the expected layout.

    Example:
        >>> category_from_path("datasets/MVTecAD/pill/train/good/000.png")
        'pill'
    """
    path = PurePath(image_path)
    if root is not None:
        return _category_below_root(path, PurePath(root))
    parts = path.parts
    if len(parts) >= 4 and parts[-3] in MVTEC_SPLIT_FOLDERS:
        return parts[-4]
    msg = (
        f"Cannot derive a category from image path '{image_path}': expected the MVTec layout "
        "'<root>/<category>/{train,test}/<type>/<file>'. For other folder layouts pass the dataset "
        "root (root=...) so the category is the first folder below it."
    )
    raise ValueError(msg)


def _category_below_root(path: PurePath, root: PurePath) -> str:
    """First component of ``path`` below ``root``; both are compared in absolute form when possible."""
    relative = None
    # as given; then both absolute with symbolic links kept (a category folder may be a link: resolving the
    # image path would leave the root); then both resolved (a dataset that resolved its paths, a linked root)
    for forms in (
        lambda: (path, root),
        lambda: (PurePath(os.path.abspath(path)), PurePath(os.path.abspath(root))),
        lambda: (Path(path).resolve(), Path(root).resolve()),
    ):
        candidate, base = forms()
        try:
            relative = candidate.relative_to(base)
            break
        except ValueError:
            continue
    if relative is None or len(relative.parts) < 2:
        msg = (
            f"Cannot derive a category from image path '{path}': it is not inside a category folder "
            f"of the dataset root '{root}' (expected '<root>/<category>/.../<file>')."
        )
        raise ValueError(msg)
    return relative.parts[0]


def category_indices(
    image_paths: Sequence[str],
    categories: Sequence[str],
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(B,)`` index in ``categories`` of each image's category (any layout when there is one category).

    Raises:
        ValueError: An image's category is not one of ``categories``.
    """
    if len(categories) == 1:
        return torch.zeros(len(image_paths), dtype=torch.long, device=device)
    index = {name: position for position, name in enumerate(categories)}
    names = [category_from_path(path) for path in image_paths]
    missing = sorted({name for name in names if name not in index})
    if missing:
        msg = f"images of categories {missing} are not among this model's categories {list(categories)}"
        raise ValueError(msg)
    return torch.tensor([index[name] for name in names], dtype=torch.long, device=device)


def datamodule_categories(datamodule: Any) -> list[str] | None:  # noqa: ANN401 - any anomalib datamodule
    """Category names of a multi-class (``categories``) or single-class (``category``) datamodule, if any."""
    found = getattr(datamodule, "categories", None) or (
        [datamodule.category] if getattr(datamodule, "category", None) else None
    )
    return list(found) if found else None


def check_known_categories(known: Sequence[str] | None, datamodule: Any) -> None:  # noqa: ANN401
    """A model must know its categories, and every category of the datamodule it is given.

    Raises:
        ValueError: ``known`` is ``None``, or the datamodule has categories outside it.
    """
    if known is None:
        raise ValueError(NO_CATEGORIES)
    unknown = sorted(set(datamodule_categories(datamodule) or ()) - set(known))
    if unknown:
        msg = (
            f"the datamodule has categories {unknown} that this PromptMAD model was not trained on "
            f"(it knows {list(known)}): select known categories with the datamodule's `categories`, "
            "or train a model that includes them."
        )
        raise ValueError(msg)
