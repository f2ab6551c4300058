# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Multi-class datamodules: one model trained and tested on several categories at once.

anomalib's ``MVTecAD`` and ``Folder`` take one category. :class:`MultiClassMVTecAD` and
:class:`MultiClassFolder` load each category with anomalib's own ``MVTecADDataset`` / ``FolderDataset``
and concatenate their sample tables (adding a ``category`` column), so every batch is an ordinary
anomalib ``ImageBatch`` and every built-in anomalib model trains on them unchanged.

What differs from anomalib's single-category datamodules:

* **Category of a sample.** Batches carry ``image_path`` but no category. The category is the first
  folder below ``root`` (:func:`~anomalib_promptmad.data.category.category_from_path` with
  ``root=datamodule.root``); with the MVTec layout (``MultiClassMVTecAD``, and ``MultiClassFolder`` with
  its default sub-paths) it is also the folder above ``train``/``test``, which needs no root.
* **Splits are per category** and deterministic (``seed`` defaults to 0): every category keeps its
  share of the validation and test sets.
* **Leak-free validation by default** (``val_split_mode="synthetic"``): a ``val_split_ratio`` share of
  each category's *training* normals is held out, and the validation set holds each held-out image
  twice: as is, and with a synthetic anomaly
  (:class:`~anomalib_promptmad.data.synthetic.dataset.SyntheticAnomalyDataset`, in memory, seeded).
  anomalib's own default for MVTec AD uses the test set as validation set, so thresholds and
  normalisation statistics are tuned on test data; ``from_test`` and ``same_as_test`` remain available
  but log a warning.
* **No download, no side effects.** A missing or empty root, or an unknown category, raises one error in
  ``__init__`` that names the path and lists the available categories; nothing is created on disk.
* ``name`` is the dataset folder's name, so anomalib's ``ImageVisualizer`` keeps
  ``<category>/test/<type>/<file>`` below its output folder: images of two categories never overwrite
  each other. ``category`` is ``""`` (there is no single category); the ``categories`` attribute lists
  them.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib.models import Padim
    >>> from anomalib_promptmad.data import MultiClassMVTecAD, PerCategoryMetrics
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from anomalib.data.datamodules.base.image import AnomalibDataModule
from anomalib.data import DatasetItem
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.datasets.image.folder import FolderDataset
from anomalib.data.datasets.image.mvtecad import IMG_EXTENSIONS, MVTecADDataset
from anomalib.data.utils import LabelName, Split, TestSplitMode, ValSplitMode
from anomalib.utils.path import resolve_dataset_root
from torch.utils.data import DataLoader, Sampler
from torchvision.transforms.v2 import Transform

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.synthetic.dataset import SyntheticAnomalyDataset
from anomalib_promptmad.data.validation import validate_samples
from anomalib_promptmad.registration import publish
from anomalib_promptmad.reliability import run_seed

__all__ = ["EpochShuffleSampler", "MultiClassDataModule", "MultiClassDataset", "MultiClassFolder", "MultiClassMVTecAD"]

logger = logging.getLogger(__name__)

_FOLDER_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


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

        The datamodules check every file's header and end before training (:mod:`.validation`); this
        catches what only a full decode finds (damaged pixel data inside an intact file) or a file changed
        since, with the path that PIL's own message lacks.
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


class MultiClassDataModule(AnomalibDataModule):
    """Shared logic of the multi-class datamodules: category resolution, per-category splits.

    Subclasses implement :meth:`_find_categories` (category name -> problem, ``None`` when usable) and
    :meth:`_load_category` (one category's train or test dataset).

    Args:
        root (str | Path | Sequence[str | Path]): Folder holding one sub-folder per category, or several
            such folders (product lines stored apart, trained as one unified model): each category is then
            looked up in every root, and one found in two roots, or in none, is an error.
        categories (Sequence[str] | str): Category names, ``"all"`` (every usable category under
            ``root``), one name, or comma-separated names.
        train_batch_size (int): Training batch size.
        eval_batch_size (int): Validation and test batch size.
        num_workers (int): Dataloader workers.
        train_augmentations (Transform | None): Augmentations of training images.
        val_augmentations (Transform | None): Augmentations of validation images.
        test_augmentations (Transform | None): Augmentations of test images.
        augmentations (Transform | None): Augmentations of stages without their own.
        test_split_mode (TestSplitMode | str): ``from_dir`` (test folders; a category without normal test
            images gets ``test_split_ratio`` of its training normals), ``synthetic`` or ``none``.
        test_split_ratio (float): Share of training normals moved to the test set where needed.
        val_split_mode (ValSplitMode | str): ``synthetic`` (default, leak-free), ``from_train``,
            ``from_test``, ``same_as_test`` or ``none``.
        val_split_ratio (float): Share of each category's training normals (``synthetic``,
            ``from_train``) or test images (``from_test``) used for validation.
        seed (int | None): Seed of the splits and synthetic anomalies; ``None`` means 0.
        validate_files (bool): Check every image and mask file of the categories in ``__init__`` (see
            :mod:`anomalib_promptmad.data.validation`); one error lists every unusable file.
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path],
        categories: Sequence[str] | str,
        train_batch_size: int,
        eval_batch_size: int,
        num_workers: int,
        train_augmentations: Transform | None,
        val_augmentations: Transform | None,
        test_augmentations: Transform | None,
        augmentations: Transform | None,
        test_split_mode: TestSplitMode | str,
        test_split_ratio: float,
        val_split_mode: ValSplitMode | str,
        val_split_ratio: float,
        seed: int | None,
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
            self.test_data = SyntheticAnomalyDataset(self.test_data, seed=self._split_seed)
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
            self.val_data = SyntheticAnomalyDataset(held_out, seed=self._split_seed)
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


class EpochShuffleSampler(Sampler[int]):
    """A random permutation per epoch, drawn from ``(run seed, epoch)`` when iteration starts.

    Args:
        length: Number of samples.
        epoch: Returns the current epoch (read at each ``iter()``: Lightning creates a resumed run's first
            iterator before it calls ``set_epoch``).
    """

    def __init__(self, length: int, epoch: Callable[[], int]) -> None:
        self.length = length
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((run_seed() * 1_000_003 + self.epoch()) % 2**63)
        return iter(torch.randperm(self.length, generator=generator).tolist())


def split_per_category(
    dataset: AnomalibDataset,
    ratio: float,
    seed: int,
    label_aware: bool = False,
    categories: Sequence[str] | None = None,
) -> tuple[AnomalibDataset, AnomalibDataset]:
    """Move a random ``ratio`` of each category's samples (of normals only, unless ``label_aware``) out.

    Each group (category, or category and label) with at least two samples gives
    ``max(1, round(ratio * n))`` samples, never all of them.

    Args:
        dataset (AnomalibDataset): Dataset whose ``samples`` have a ``category`` column.
        ratio (float): Share of each group to take, in (0, 1).
        seed (int): Seed of the draw.
        label_aware (bool): Split every label of a category (else only its normal samples are drawn
            from). Defaults to ``False``.
        categories (Sequence[str] | None): Only draw from these categories. Defaults to all.

    Returns:
        tuple[AnomalibDataset, AnomalibDataset]: The remaining samples and the samples taken.
    """
    samples = dataset.samples
    rng = np.random.default_rng(seed)
    eligible = samples.category.isin(categories) if categories is not None else pd.Series(True, index=samples.index)
    if not label_aware:
        eligible &= samples.label_index == LabelName.NORMAL
    keys = ["category", "label_index"] if label_aware else ["category"]
    taken: list[int] = []
    for _, group in sorted(samples[eligible].groupby(keys, sort=True), key=lambda item: str(item[0])):
        positions = np.sort(samples.index.get_indexer(group.index))
        if len(positions) < 2:
            continue
        count = min(len(positions) - 1, max(1, round(ratio * len(positions))))
        taken.extend(rng.choice(positions, size=count, replace=False).tolist())
    kept = sorted(set(range(len(samples))) - set(taken))
    return dataset.subsample(kept), dataset.subsample(sorted(taken))


class MultiClassMVTecAD(MultiClassDataModule):
    """Several MVTec AD categories (or any data in the MVTec layout) as one dataset.

    Expected layout (as anomalib's ``MVTecAD``)::

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
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Dataloader workers. Defaults to ``8``.
        train_augmentations (Transform | None): Training augmentations. Defaults to ``None``.
        val_augmentations (Transform | None): Validation augmentations. Defaults to ``None``.
        test_augmentations (Transform | None): Test augmentations. Defaults to ``None``.
        augmentations (Transform | None): Augmentations of stages without their own. Defaults to ``None``.
        test_split_mode (TestSplitMode | str): Defaults to ``"from_dir"``.
        test_split_ratio (float): Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): Defaults to ``"synthetic"`` (leak-free, see module docs).
        val_split_ratio (float): Share of each category's training normals held out for validation
            (each appears twice: normal and synthetic anomaly). Defaults to ``0.1``.
        seed (int | None): Seed of splits and synthetic anomalies (``None``: 0). Defaults to ``None``.
        validate_files (bool): Check every image and mask file in ``__init__`` (headers and file ends, about
            0.25 ms a file). Defaults to ``True``.

    Raises:
        FileNotFoundError: If ``root`` is missing or holds no category in the MVTec layout.
        ValueError: If a requested category does not exist (the message lists the available ones).

    Example:
        >>> datamodule = MultiClassMVTecAD(root="datasets/MVTecAD", categories=["bottle", "pill"])  # doctest: +SKIP
        >>> datamodule.categories  # doctest: +SKIP
        ['bottle', 'pill']
    """

    def __init__(
        self,
        root: str | Path | Sequence[str | Path] | None = "./datasets/MVTecAD",
        categories: Sequence[str] | str = "all",
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
            root=(
                resolve_dataset_root(root, "MVTecAD")
                if root is None or isinstance(root, str | Path)
                else [resolve_dataset_root(path, "MVTecAD") for path in root]
            ),
            categories=categories,
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
            validate_files=validate_files,
        )

    @property
    def layout(self) -> str:
        """MVTec layout."""
        return "'<root>/<category>/{train/good,test/<type>,ground_truth/<defect>}/<file>.png'"

    def _find_categories(self, root: Path) -> dict[str, str | None]:
        return {folder.name: _mvtec_category_problem(folder) for folder in self._category_dirs(root)}

    def _load_category(self, category: str, split: Split) -> AnomalibDataset:
        return MVTecADDataset(root=self.category_roots[category], category=category, split=split)


def _has_images(folder: Path, extensions: Sequence[str]) -> bool:
    return folder.is_dir() and any(p.suffix in extensions for p in folder.iterdir())


def _mvtec_category_problem(folder: Path) -> str | None:
    """What keeps ``folder`` from being an MVTec-layout category, or ``None``."""
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
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Dataloader workers. Defaults to ``8``.
        train_augmentations (Transform | None): Training augmentations. Defaults to ``None``.
        val_augmentations (Transform | None): Validation augmentations. Defaults to ``None``.
        test_augmentations (Transform | None): Test augmentations. Defaults to ``None``.
        augmentations (Transform | None): Augmentations of stages without their own. Defaults to ``None``.
        test_split_mode (TestSplitMode | str): Defaults to ``"from_dir"``.
        test_split_ratio (float): Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): Defaults to ``"synthetic"`` (leak-free).
        val_split_ratio (float): Defaults to ``0.1``.
        seed (int | None): Seed of splits and synthetic anomalies (``None``: 0). Defaults to ``None``.
        validate_files (bool): Check every image and mask file in ``__init__`` (headers and file ends, about
            0.25 ms a file). Defaults to ``True``.

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
        self.normal_dir = _as_patterns(normal_dir)
        self.abnormal_dir = _as_patterns(abnormal_dir)
        self.normal_test_dir = _as_patterns(normal_test_dir)
        self.mask_dir = _as_patterns(mask_dir)
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.normal_dir:
            msg = "MultiClassFolder: normal_dir must name at least one sub-folder, e.g. 'train/good'."
            raise ValueError(msg)
        super().__init__(
            root=root,
            categories=categories,
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
            validate_files=validate_files,
        )

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


# Short names for the stock CLI (``--data MultiClassMVTecAD``), also when anomalib was imported by our own code.
publish(MultiClassMVTecAD, "anomalib.data")
publish(MultiClassFolder, "anomalib.data")
