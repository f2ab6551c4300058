# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The base of the multi-class datamodules: one model trained and tested on several categories at once.

anomalib's ``MVTecAD`` and ``Folder`` take one category.
:class:`~anomalib_promptmad.data.mvtec.MultiClassMVTecAD` and
:class:`~anomalib_promptmad.data.folder.MultiClassFolder` load each category with anomalib's own
``MVTecADDataset`` / ``FolderDataset`` and concatenate their sample tables
(:class:`~anomalib_promptmad.data.dataset.MultiClassDataset`, adding a ``category`` column), so every batch is
an ordinary anomalib ``ImageBatch`` and every built-in anomalib model trains on them unchanged.
:class:`MultiClassDataModule` holds what they share, including the settings they take besides their layout.

What differs from anomalib's single-category datamodules:

* **Category of a sample.** Batches carry ``image_path`` but no category. The category is the first
  folder below ``root`` (:func:`~anomalib_promptmad.data.category.category_from_path` with
  ``root=datamodule.root``); with the MVTec layout (``MultiClassMVTecAD``, and ``MultiClassFolder`` with
  its default sub-paths) it is also the folder above ``train``/``test``, which needs no root.
* **Splits are per category** and deterministic (``seed`` defaults to 0): every category keeps its
  share of the validation and test sets (:func:`~anomalib_promptmad.data.split.split_per_category`).
* **Leak-free validation by default** (``val_split_mode="synthetic"``): a ``val_split_ratio`` share of
  each category's *training* normals is held out, and the validation set holds each held-out image
  twice: as is, and with a synthetic anomaly
  (:class:`~anomalib_promptmad.data.synthetic.dataset.SyntheticValidationDataset`, in memory, seeded).
  anomalib's own default for MVTec AD uses the test set as validation set, so thresholds and
  normalisation statistics are tuned on test data; ``from_test`` and ``same_as_test`` remain available
  but log a warning.
* **No download, no side effects.** A missing or empty root, or an unknown category, raises one error in
  ``__init__`` that names the path and lists the available categories; nothing is created on disk.
* ``name`` is the dataset folder's name, so anomalib's ``ImageVisualizer`` keeps
  ``<category>/test/<type>/<file>`` below its output folder: images of two categories never overwrite
  each other. ``category`` is ``""`` (there is no single category); the ``categories`` attribute lists
  them.
* **Training order survives a resume**: batches are shuffled by
  :class:`~anomalib_promptmad.data.sampler.EpochShuffleSampler` from the run's seed and the epoch.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib.models import Padim
    >>> from anomalib_promptmad.callbacks import PerCategoryMetrics
    >>> from anomalib_promptmad.data import MultiClassMVTecAD
    >>> datamodule = MultiClassMVTecAD(root="./datasets/MVTecAD", categories=["bottle", "pill"])  # doctest: +SKIP
    >>> engine = Engine(callbacks=[PerCategoryMetrics()])  # doctest: +SKIP
    >>> engine.fit(Padim(), datamodule=datamodule)  # doctest: +SKIP
    >>> engine.test(Padim(), datamodule=datamodule)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import os
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.dataset import MultiClassDataset
from anomalib_promptmad.data.sampler import EpochShuffleSampler
from anomalib_promptmad.data.split import split_per_category
from anomalib_promptmad.data.synthetic.dataset import SyntheticValidationDataset
from anomalib_promptmad.data.validation import validate_samples
from anomalib_promptmad.infrastructure.training_guards import run_seed

__all__ = ["MultiClassDataModule"]

logger = logging.getLogger(__name__)


class MultiClassDataModule(AnomalibDataModule):
    """Shared logic and settings of the multi-class datamodules: category resolution, per-category splits.

    Subclasses implement :meth:`_find_categories` (category name -> problem, ``None`` when usable) and
    :meth:`_load_category` (one category's train or test dataset). They take ``root`` and ``categories``
    (with their own layout's meaning and defaults) and their layout's options, and forward every other
    argument here as ``**kwargs``: jsonargparse (the anomalib CLI) follows that forwarding, so
    ``anomalib train --data MultiClassMVTecAD`` lists, types and defaults these arguments as its own.

    Args:
        root (str | Path | Sequence[str | Path]): Folder holding one sub-folder per category, or several
            such folders (product lines stored apart, trained as one unified model): each category is then
            looked up in every root, and one found in two roots, or in none, is an error.
        categories (Sequence[str] | str): Category names, ``"all"`` (every usable category under
            ``root``), one name, or comma-separated names.
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Dataloader workers. Defaults to ``8``.
        train_augmentations (Transform | None): Augmentations of training images. Defaults to ``None``.
        val_augmentations (Transform | None): Augmentations of validation images. Defaults to ``None``.
        test_augmentations (Transform | None): Augmentations of test images. Defaults to ``None``.
        augmentations (Transform | None): Augmentations of stages without their own. Defaults to ``None``.
        test_split_mode (TestSplitMode | str): ``from_dir`` (test folders; a category without normal test
            images gets ``test_split_ratio`` of its training normals), ``synthetic`` or ``none``.
            Defaults to ``"from_dir"``.
        test_split_ratio (float): Share of training normals moved to the test set where needed.
            Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): ``synthetic`` (leak-free, see the module docs),
            ``from_train``, ``from_test``, ``same_as_test`` or ``none``. Defaults to ``"synthetic"``.
        val_split_ratio (float): Share of each category's training normals (``synthetic``: each held-out
            image appears twice, as is and with a synthetic anomaly; ``from_train``) or test images
            (``from_test``) used for validation. Defaults to ``0.1``.
        seed (int | None): Seed of the splits and synthetic anomalies; ``None`` means 0. Defaults to ``None``.
        validate_files (bool): Check every image and mask file of the categories in ``__init__`` (headers
            and file ends, about 0.25 ms a file; see :mod:`anomalib_promptmad.data.validation`); one error
            lists every unusable file. Defaults to ``True``.

    Raises:
        FileNotFoundError: If a root is missing or holds no usable category.
        ValueError: If a requested category does not exist (the message lists the available ones), a
            category is found under two roots, or a split option is out of range.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        categories: Sequence[str] | str,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        val_split_mode: ValSplitMode | str = ValSplitMode.SYNTHETIC,
        val_split_ratio: float = 0.1,
        seed: int | None = None,
        validate_files: bool = True,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        if self.val_split_mode == ValSplitMode.FROM_DIR:
            msg = (
                f"{self.__class__.__name__} has no validation folders; use val_split_mode 'synthetic' "
                "(default), 'from_train', 'from_test', 'same_as_test' or 'none'."
            )
            raise ValueError(msg)
        for option, ratio in (("test_split_ratio", test_split_ratio), ("val_split_ratio", val_split_ratio)):
            if not 0.0 < ratio < 1.0:
                msg = f"{option} must be in (0, 1), got {ratio}"
                raise ValueError(msg)
        self.roots = [Path(root)] if isinstance(root, str | Path) else [Path(path) for path in root]
        if not self.roots:
            msg = f"{self.__class__.__name__}: root names no folder"
            raise ValueError(msg)
        # the first root names the dataset (results folder); category_roots says where each category lives
        self.root = self.roots[0]
        self.category_roots: dict[str, Path] = {}
        self.categories = self._resolve_categories(categories)
        if validate_files:
            # here, not in setup: the Engine creates its results folder before setup runs
            self.validate_files()

    # ------------------------------------------------------------------ categories

    @abstractmethod
    def _find_categories(self, root: Path) -> dict[str, str | None]:
        """Every sub-folder of ``root`` -> ``None`` if it is a usable category, else what it lacks."""

    @abstractmethod
    def _load_category(self, category: str, split: Split) -> AnomalibDataset:
        """The ``split`` (train or test) dataset of one category (found in ``category_roots[category]``)."""

    @property
    def layout(self) -> str:
        """Human-readable folder layout expected under ``root`` (for error messages)."""
        return "<root>/<category>/..."

    def _resolve_categories(self, requested: Sequence[str] | str) -> list[str]:
        """Validate the roots and the requested categories; return them sorted. Touches nothing on disk.

        Also fills :attr:`category_roots` (category -> the root it was found in).
        """
        name = self.__class__.__name__
        found: dict[str, str | None] = {}
        where: dict[str, list[Path]] = {}
        for root in self.roots:
            if not root.is_dir():
                what = "is not a folder" if root.exists() else "does not exist"
                msg = (
                    f"{name}: dataset root '{root}' {what}. Expected the layout {self.layout}. "
                    "Nothing is downloaded: point root at a local copy (the demo dataset is made with "
                    "`promptmad-demo-data --root PATH`)."
                )
                raise FileNotFoundError(msg)
            for category, problem in self._find_categories(root).items():
                if problem is None or category not in found or found[category] is not None:
                    found[category] = problem
                if problem is None:
                    where.setdefault(category, []).append(root)
        available = sorted(category for category, problem in found.items() if problem is None)
        if isinstance(requested, str):
            requested = (
                available if requested.strip() == "all" else [c.strip() for c in requested.split(",") if c.strip()]
            )
        roots = ", ".join(f"'{root}'" for root in self.roots)
        if not available:
            msg = f"{name}: dataset root {roots} holds no category folder with the layout {self.layout}."
            if found:
                msg += " Problems: " + "; ".join(f"{c}: {p}" for c, p in sorted(found.items()))
            raise FileNotFoundError(msg)
        requested = list(dict.fromkeys(requested))
        if not requested:
            msg = f"{name}: no category requested; available in {roots}: {available}"
            raise ValueError(msg)
        problems = []
        for category in requested:
            if category in available:
                continue
            reason = found.get(category) or "no such folder"
            problems.append(f"'{category}' ({reason})")
        if problems:
            msg = (
                f"{name}: unknown or unusable categor{'y' if len(problems) == 1 else 'ies'} "
                f"{', '.join(problems)} under {roots}. Available categories: {available}"
            )
            raise ValueError(msg)
        twice = {category: where[category] for category in requested if len(where[category]) > 1}
        if twice:
            listed = "; ".join(f"'{c}' in {', '.join(str(r) for r in paths)}" for c, paths in sorted(twice.items()))
            msg = (
                f"{name}: categor{'y' if len(twice) == 1 else 'ies'} found under more than one root: {listed}. "
                "A category must live in exactly one root: remove or rename one copy."
            )
            raise ValueError(msg)
        self.category_roots = {category: where[category][0] for category in requested}
        return sorted(requested)

    def validate_files(self) -> None:
        """Check every image and mask file of the selected categories (headers and file ends, no decoding).

        Raises:
            DataValidationError: One error listing each unusable file (corrupt, truncated, 16-bit, a mask
                whose size differs from its image) with its fix.
        """
        tables = [
            self._category_dataset(category, split).samples
            for category in self.categories
            for split in (Split.TRAIN, Split.TEST)
        ]
        roots = ", ".join(f"'{root}'" for root in self.roots)
        validate_samples(pd.concat(tables, ignore_index=True), f"{self.__class__.__name__} {roots}")

    def _category_dataset(self, category: str, split: Split) -> AnomalibDataset:
        """:meth:`_load_category` with sample paths kept below ``root``, also through symbolic links.

        anomalib's datasets resolve their root, so the images of a category folder that is a symbolic link
        (a dataset assembled from folders kept elsewhere) get the link's *target* path, which is not below
        ``root`` and may not even carry the category's name: the category could no longer be read from
        ``image_path``. The resolved prefix is swapped back for ``<root>/<category>`` (the files are the same).
        """
        dataset = self._load_category(category, split)
        root = self.category_roots[category]
        linked = Path(os.path.abspath(root / category))  # absolute, symbolic links kept
        target = (root / category).resolve()
        if target == linked or dataset.samples.empty:
            return dataset
        prefix = str(target) + os.sep

        def keep_link(value: object) -> object:
            text = str(value) if isinstance(value, str | Path) else None
            if text is None or not text.startswith(prefix):
                return value
            return str(linked / text[len(prefix) :])

        samples = dataset.samples.copy()
        for column in ("image_path", "mask_path"):
            if column in samples:
                # a list, not Series.map: a column of None (normal images' masks) must not become NaN floats
                samples[column] = pd.Series(
                    [keep_link(value) for value in samples[column]], index=samples.index, dtype=object
                )
        dataset.samples = samples
        return dataset

    @staticmethod
    def _category_dirs(root: Path) -> list[Path]:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    @property
    def name(self) -> str:
        """Name of the dataset folder (anomalib's visualizer keeps the path below it; results go there)."""
        return self.root.resolve().name or self.__class__.__name__

    def category_of(self, image_path: str | Path) -> str:
        """Category of a sample of this datamodule: the first folder of ``image_path`` below its root."""
        if len(self.roots) == 1:
            return category_from_path(image_path, root=self.root)
        for category, root in self.category_roots.items():
            try:
                found = category_from_path(image_path, root=root)
            except ValueError:
                continue
            if found == category:
                return found
        return category_from_path(image_path, root=self.root)  # raises, naming the path

    def prepare_data(self) -> None:
        """Check that the data is still there; never downloads (anomalib's MVTecAD would)."""
        self._resolve_categories(self.categories)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches whose order depends only on the run's seed and the epoch.

        anomalib's loader shuffles from the global random state, which a checkpoint does not hold and which
        Lightning draws from *before* the first epoch of a resumed run starts: a resumed run would see other
        batches than the interrupted one. Under DDP Lightning wraps this sampler in a distributed one.
        """
        return DataLoader(
            dataset=self.train_data,
            sampler=EpochShuffleSampler(len(self.train_data), self._current_epoch),
            batch_size=self.train_batch_size,
            num_workers=self.num_workers,
            collate_fn=self.external_collate_fn or self.train_data.collate_fn,
            # its own generator: creating the iterator must not consume the global random state
            generator=torch.Generator().manual_seed(run_seed()),
        )

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    # ------------------------------------------------------------------ splits

    def _setup(self, _stage: str | None = None) -> None:
        dataset_name = self.name
        self.train_data = MultiClassDataset(
            {category: self._category_dataset(category, Split.TRAIN) for category in self.categories},
            name=dataset_name,
        )
        self.test_data = MultiClassDataset(
            {category: self._category_dataset(category, Split.TEST) for category in self.categories},
            name=dataset_name,
        )

    @property
    def _split_seed(self) -> int:
        return 0 if self.seed is None else int(self.seed)

    def _create_test_split(self) -> None:
        """Per category: move training normals to the test set where it has none; synthesise if asked."""
        if self.test_split_mode == TestSplitMode.NONE:
            return
        test = self.test_data.samples
        lacking = [
            category
            for category in self.categories
            if not ((test.category == category) & (test.label_index == LabelName.NORMAL)).any()
        ]
        if lacking:
            logger.info(
                "No normal test images for %s: using %.2f of their training normals.", lacking, self.test_split_ratio
            )
            self.train_data, moved = split_per_category(
                self.train_data,
                self.test_split_ratio,
                self._split_seed,
                categories=lacking,
            )
            self.test_data += moved
        if self.test_split_mode == TestSplitMode.SYNTHETIC:
            self.test_data = SyntheticValidationDataset(self.test_data, seed=self._split_seed)
        elif self.test_split_mode != TestSplitMode.FROM_DIR:
            msg = f"Unsupported test_split_mode: {self.test_split_mode}"
            raise ValueError(msg)

    def _create_val_split(self) -> None:
        """Per-category validation split (see the class docstring for the modes)."""
        mode = self.val_split_mode
        if mode in {ValSplitMode.FROM_TEST, ValSplitMode.SAME_AS_TEST}:
            logger.warning(
                "val_split_mode=%s: thresholds and score normalisation are tuned on test images, so test "
                "metrics are optimistic. Use val_split_mode='synthetic' for a leak-free validation set.",
                mode.value,
            )
        if mode == ValSplitMode.NONE:
            return
        if mode == ValSplitMode.SYNTHETIC:
            self.train_data, held_out = split_per_category(self.train_data, self.val_split_ratio, self._split_seed)
            self.val_data = SyntheticValidationDataset(held_out, seed=self._split_seed)
        elif mode == ValSplitMode.FROM_TRAIN:
            self.train_data, self.val_data = split_per_category(
                self.train_data,
                self.val_split_ratio,
                self._split_seed,
                label_aware=True,
            )
        elif mode == ValSplitMode.FROM_TEST:
            self.test_data, self.val_data = split_per_category(
                self.test_data,
                self.val_split_ratio,
                self._split_seed,
                label_aware=True,
            )
        elif mode == ValSplitMode.SAME_AS_TEST:
            self.val_data = copy.deepcopy(self.test_data)
        else:
            msg = f"Unsupported val_split_mode: {mode}"
            raise ValueError(msg)
