# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""A validation (or test) set of normal images and synthetic anomalies made from them, in memory.

anomalib's own ``SyntheticAnomalyDataset`` writes PNG files to the system temp folder, draws its
anomalies from the global random state (different every run) and picks the anomalous half across all
categories at once. :class:`SyntheticAnomalyDataset` here instead keeps every source image twice, once
as a normal sample and once with an anomaly synthesised on the fly by
:class:`~anomalib_promptmad.data.synthetic.AnomalySynthesizer`. Each anomaly is seeded from the image's
path and the dataset seed, so it is identical in every epoch, every worker and every run; nothing is
written to disk and every category keeps its share.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import torch
from anomalib.data.dataclasses import ImageItem
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName, read_image
from torchvision import tv_tensors

from anomalib_promptmad.data.synthetic.synthesizer import AnomalySynthesizer

__all__ = ["SYNTHETIC_LABEL", "SyntheticAnomalyDataset"]

# Value of the ``label`` column for the synthesised samples.
SYNTHETIC_LABEL = "synthetic"


class SyntheticAnomalyDataset(AnomalibDataset):
    """Normal images plus one synthetic anomaly of each (segmentation task, exact masks).

    Args:
        source (AnomalibDataset): Dataset whose normal samples are used; anomalous ones are ignored.
            Its augmentations are reused (applied after synthesis, jointly to image and mask).
        seed (int): Seed of the anomalies. Defaults to ``0``.
        synthesizer (AnomalySynthesizer | None): Anomaly generator. Defaults to ``AnomalySynthesizer()``
            (CutPaste or Perlin blending with textures derived from the image itself).
        name (str | None): Dataset name. Defaults to the source's name.

    Raises:
        ValueError: If ``source`` has no normal sample.

    Example:
        >>> val = SyntheticAnomalyDataset(normal_train_subset, seed=0)  # doctest: +SKIP
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
    ) -> None:
        super().__init__(augmentations=source.augmentations)
        self.seed = seed
        self.synthesizer = synthesizer or AnomalySynthesizer()
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

    def __getitem__(self, index: int) -> ImageItem:
        """Sample ``index``: the normal image, or its synthetic anomaly with the exact mask."""
        row = self.samples.iloc[index]
        image = read_image(row.image_path, as_tensor=True)
        if row.label_index == LabelName.ABNORMAL:
            generator = torch.Generator().manual_seed(self.item_seed(row.image_path))
            anomalous, mask = self.synthesizer(image.unsqueeze(0), generator)
            image = tv_tensors.Image(anomalous[0])
            gt_mask = tv_tensors.Mask(mask[0, 0].to(torch.uint8))
        else:
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
