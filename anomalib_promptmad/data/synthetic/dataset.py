# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The leak-free validation set: held-out normal images, and a synthetic anomaly of each, in memory.

The multi-class datamodules build it from each category's held-out training normals
(``val_split_mode="synthetic"``, the default), and from the test normals with ``test_split_mode="synthetic"``.

anomalib's own ``SyntheticAnomalyDataset`` writes PNG files to the system temp folder, draws its
anomalies from the global random state (different every run) and picks the anomalous half across all
categories at once. :class:`SyntheticValidationDataset` instead keeps every source image twice, once
as a normal sample and once with an anomaly synthesised on the fly by
:class:`~anomalib_promptmad.data.synthetic.AnomalySynthesizer`. Each anomaly is seeded from the image's
path and the dataset seed, so it is identical in every epoch, every worker and every run; nothing is
written to disk and every category keeps its share.

By default its anomalies come only from the families held out of training
(:data:`~anomalib_promptmad.data.synthetic.families.VALIDATION_FAMILIES`: colour shifts, misplaced parts,
textures of other categories), placed on each category's foreground estimated from the source's normal
images, so validation scores measure how the model does on defect kinds it never trained on.

Each anomalous sample is assigned one family before anything is synthesised: within a category, the samples
ordered by their seed take the families in turn (object-only families are skipped for textures), so every
family gets an equal share of a small split and :meth:`SyntheticValidationDataset.anomaly_family` names a
sample's family without synthesising it. Choices made on validation (the fusion rules) can then be scored
per family, so that one family that happens to suit a rule does not decide for the whole category.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data.dataclasses import ImageItem
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, read_image
from torchvision import tv_tensors

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.synthetic.families import OBJECT_ONLY_FAMILIES, VALIDATION_FAMILIES
from anomalib_promptmad.data.synthetic.foreground import category_foregrounds, foreground_batch
from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer, SynthesisResult

__all__ = ["SYNTHETIC_LABEL", "SyntheticValidationDataset"]

# Value of the ``label`` column for the synthesised samples.
SYNTHETIC_LABEL = "synthetic"


class SyntheticValidationDataset(AnomalibDataset):
    """Normal images plus one synthetic anomaly of each (segmentation task, exact masks).

    Args:
        source (AnomalibDataset): Dataset whose normal samples are used; anomalous ones are ignored.
            Its augmentations are reused (applied after synthesis, jointly to image and mask).
        seed (int): Seed of the anomalies. Defaults to ``0``.
        synthesizer (AnomalySynthesizer | None): Anomaly generator. Defaults to one drawing ``families``.
        name (str | None): Dataset name. Defaults to the source's name.
        families (Mapping[str, float] | Sequence[str] | None): Families of the default synthesizer (ignored
            when ``synthesizer`` is given). Defaults to ``None``: the held-out
            :data:`~anomalib_promptmad.data.synthetic.families.VALIDATION_FAMILIES`.
        foreground (bool): Place anomalies on each category's foreground, estimated from the source's normal
            images (textures: anywhere). Defaults to ``True``.

    Raises:
        ValueError: If ``source`` has no normal sample.

    Example:
        >>> val = SyntheticValidationDataset(normal_train_subset, seed=0)  # doctest: +SKIP
        >>> item = val[1]  # doctest: +SKIP
        >>> item.gt_label, item.gt_mask.shape  # doctest: +SKIP
        (tensor(1), torch.Size([256, 256]))
    """

    def __init__(
        self,
        source: AnomalibDataset,
        seed: int = 0,
        synthesizer: AnomalySynthesizer | None = None,
        name: str | None = None,
        families: Mapping[str, float] | Sequence[str] | None = None,
        foreground: bool = True,
    ) -> None:
        super().__init__(augmentations=source.augmentations)
        self.seed = seed
        self.synthesizer = synthesizer or AnomalySynthesizer(
            families=VALIDATION_FAMILIES if families is None else families,
        )
        self._name = name or source.name
        normal = source.samples[source.samples.label_index == LabelName.NORMAL]
        if normal.empty:
            msg = f"Cannot build a synthetic anomaly set from '{self._name}': it has no normal image."
            raise ValueError(msg)
        normal = normal.assign(mask_path="")
        anomalous = normal.assign(label=SYNTHETIC_LABEL, label_index=int(LabelName.ABNORMAL))
        samples = pd.concat([normal, anomalous], ignore_index=True)
        samples.attrs["task"] = "segmentation"
        self.samples = samples
        self._categories = [self._category_of(path) for path in normal.image_path]
        self.foregrounds = category_foregrounds(normal.image_path, self._category_of) if foreground else {}
        self._families = self._assign_families(list(normal.image_path), self._categories)

    @property
    def name(self) -> str:
        """Name of the dataset (the source's by default)."""
        return self._name

    def item_seed(self, image_path: str) -> int:
        """Seed of the anomaly made from ``image_path``: independent of sample order and worker.

        The path's last four components (``<category>/<split>/<type>/<file>`` in the MVTec layout) are
        hashed, so the anomalies do not depend on where the dataset is stored.
        """
        key = "/".join(Path(image_path).parts[-4:])
        return zlib.crc32(f"{self.seed}:{key}".encode())

    def _assign_families(self, image_paths: list[str], categories: list[str]) -> dict[str, str]:
        """``{image path: family}``: per category, the paths ordered by seed take the families in turn."""
        by_category: dict[str, list[str]] = {}
        for path, category in zip(image_paths, categories, strict=True):
            by_category.setdefault(category, []).append(path)
        assigned = {}
        for category, paths in by_category.items():
            names = self.synthesizer.families
            if self.foregrounds.get(category) is None:  # a texture: no part to misplace or remove
                names = [name for name in names if name not in OBJECT_ONLY_FAMILIES] or names
            for rank, path in enumerate(sorted(paths, key=lambda path: (self.item_seed(path), path))):
                assigned[path] = names[rank % len(names)]
        return assigned

    def anomaly_family(self, image_path: str) -> str:
        """The family assigned to the anomaly made from ``image_path`` (the synthesised one may fall back).

        Raises:
            KeyError: If ``image_path`` is not a source image of this dataset.
        """
        return self._families[image_path]

    def _category_of(self, image_path: str) -> str:
        try:
            return category_from_path(image_path)
        except ValueError:  # not an MVTec-style path: one category
            return self._name

    def anomaly(self, index: int) -> SynthesisResult:
        """The synthetic anomaly of sample ``index`` (an anomalous one), before augmentation, with its family.

        The foreign-texture donor is a normal image of another category, chosen from the item's seed.
        """
        row = self.samples.iloc[index]
        image = read_image(row.image_path, as_tensor=True).unsqueeze(0)
        seed = self.item_seed(row.image_path)
        category = self._category_of(row.image_path)
        others = [i for i, name in enumerate(self._categories) if name != category]
        donors = None
        if others:
            donor = read_image(self.samples.iloc[others[seed % len(others)]].image_path, as_tensor=True)
            if donor.shape[-2:] != image.shape[-2:]:
                donor = F.interpolate(donor[None], size=image.shape[-2:], mode="bilinear", antialias=True)[0]
            donors = donor.unsqueeze(0).clamp(0.0, 1.0)
        foreground = foreground_batch([self.foregrounds.get(category)], *image.shape[-2:])
        synthesizer = self.synthesizer.drawing_only(self._families[row.image_path])
        return synthesizer.synthesize(image, torch.Generator().manual_seed(seed), foreground, donors=donors)

    def __getitem__(self, index: int) -> ImageItem:
        """Sample ``index``: the normal image, or its synthetic anomaly with the exact mask."""
        row = self.samples.iloc[index]
        if row.label_index == LabelName.ABNORMAL:
            result = self.anomaly(index)
            image = tv_tensors.Image(result.images[0])
            gt_mask = tv_tensors.Mask(result.masks[0, 0].to(torch.uint8))
        else:
            image = read_image(row.image_path, as_tensor=True)
            gt_mask = tv_tensors.Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
        if self.augmentations:
            image, gt_mask = self.augmentations(image, gt_mask)
        return ImageItem(
            image=image,
            gt_mask=gt_mask,
            gt_label=torch.tensor(int(row.label_index)),
            image_path=row.image_path,
            mask_path="",
        )
