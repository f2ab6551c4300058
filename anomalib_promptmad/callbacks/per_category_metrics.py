# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category test metrics for multi-class anomaly detection, for any anomalib model.

anomalib's ``Evaluator`` computes each metric once over the whole test set. A multi-class model must be
judged per category (and by the mean over categories, as in the multi-class literature).
:class:`PerCategoryMetrics` is a Lightning callback that groups test predictions by the category in
``image_path`` and computes, per category and as the mean over categories:

* ``image_AUROC``, ``image_AUPR``: anomalib ``AUROC`` / ``AUPR`` on ``pred_score`` vs ``gt_label``;
* ``image_F1Max``: best F1 over all thresholds (threshold-free);
* ``image_F1Score``: anomalib ``F1Score`` on ``pred_label`` (the model's own threshold);
* ``pixel_AUROC``, ``pixel_AUPR`` (pixel AP): on ``anomaly_map`` vs ``gt_mask``;
* ``pixel_AUPRO``: anomalib ``AUPRO`` (FPR limit 0.3);
* ``pixel_F1Max``, ``pixel_F1Score``: as at image level, on ``anomaly_map`` / ``pred_mask``.

They are logged as ``<category>/<metric>`` and ``mean/<metric>`` (so ``Engine.test`` returns them) and
written to ``per_category_metrics.csv`` in the trainer's ``default_root_dir``.

Which scores the callback sees (checked for anomalib 2.7 with Padim): Lightning runs the callbacks
given to the ``Trainer``/``Engine`` *before* the model's own (``configure_callbacks`` results are
appended), so at ``on_test_batch_end`` this callback sees the model's raw outputs (Padim: unbounded
Mahalanobis distances); anomalib's ``PostProcessor`` afterwards replaces ``pred_score``/``anomaly_map``
by values min-max normalised with validation statistics and *clamped* to [0, 1], and adds
``pred_label``/``pred_mask``. torchmetrics would treat raw scores outside [0, 1] as logits (sigmoid:
large distances all saturate to 1.0) and clamped scores have ties, so threshold-free metrics here use the
raw scores min-max normalised **per category** over the whole test set: an exactly order-preserving map
into [0, 1]. ``pred_label``/``pred_mask`` are read after every batch-end hook has run (at the next
batch start), so the F1 scores use the model's own threshold. If the callback is registered after the
post-processor, it computes on the clamped scores and warns once.

Memory: per category the callback keeps anomaly maps (float32) and masks (bool) at most
``max_map_size`` pixels on a side (larger maps are area-downsampled, masks nearest): about 400 KB per
256 x 256 test image (0.7 GB for the 1725 test images of MVTec AD), like anomalib's own pixel metrics.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.metrics import AUPR, AUPRO, AUROC, F1Max, F1Score
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.infrastructure.atomic_write import write_text_atomic

__all__ = ["IMAGE_METRICS", "PIXEL_METRICS", "PerCategoryMetrics"]

logger = logging.getLogger(__name__)

# tempfile's default names: prefix "tmp" + 8 characters of tempfile._RandomNameSequence
_MKDTEMP_NAME = re.compile(r"tmp[a-z0-9_]{8}")

IMAGE_METRICS = ("image_AUROC", "image_AUPR", "image_F1Max", "image_F1Score")
PIXEL_METRICS = ("pixel_AUROC", "pixel_AUPR", "pixel_AUPRO", "pixel_F1Max", "pixel_F1Score")


@dataclass
class _CategoryState:
    """Everything kept for one category until the end of the test epoch (CPU tensors)."""

    scores: list[torch.Tensor] = field(default_factory=list)  # (n,) raw image scores
    labels: list[torch.Tensor] = field(default_factory=list)  # (n,) int
    pred_labels: list[torch.Tensor] = field(default_factory=list)  # (n,) bool, when the model gives them
    maps: list[torch.Tensor] = field(default_factory=list)  # (n, h, w) float32
    masks: list[torch.Tensor] = field(default_factory=list)  # (n, h, w) bool
    pred_masks: list[torch.Tensor] = field(default_factory=list)  # (n, h, w) bool

    @property
    def n_images(self) -> int:
        return sum(len(s) for s in self.labels)

    @property
    def n_anomalous(self) -> int:
        return int(sum(int(s.sum()) for s in self.labels))


@dataclass
class _PendingBatch:
    """A batch seen at ``on_test_batch_end`` whose post-processed fields are read later."""

    outputs: Any
    categories: list[str]
    scores: torch.Tensor | None
    score_ref: torch.Tensor | None
    maps: torch.Tensor | None


class PerCategoryMetrics(Callback):
    """Test-time metrics per category and their mean, for any anomalib model and datamodule.

    Args:
        root (str | Path | None): Dataset root whose first sub-folder is the category. Defaults to
            ``trainer.datamodule.root`` when the datamodule has one, else the MVTec layout rule of
            :func:`~anomalib_promptmad.data.category.category_from_path`.
        csv_path (str | Path | None): Where to write the table. Defaults to
            ``<trainer.default_root_dir>/per_category_metrics.csv``.
        max_map_size (int | None): Longest side at which pixel metrics are computed (memory bound);
            ``None`` keeps the model's resolution. Defaults to ``256``.
        fpr_limit (float): FPR limit of AUPRO. Defaults to ``0.3``.

    Attributes:
        results (dict[str, dict[str, float]]): After a test run: category (and ``"mean"``) -> metric -> value.
        csv_path (Path | None): The table written by the last test run.
        captured_raw_scores (bool | None): Whether the scores were captured before anomalib's
            post-processor replaced them (``True`` when registered as a Trainer/Engine callback).

    Example:
        >>> from anomalib.engine import Engine
        >>> metrics = PerCategoryMetrics()
        >>> engine = Engine(callbacks=[metrics])  # doctest: +SKIP
        >>> engine.test(model, datamodule=MultiClassMVTecAD(categories=["bottle", "pill"]))  # doctest: +SKIP
        >>> metrics.results["mean"]["pixel_AUROC"]  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | Path | None = None,
        csv_path: str | Path | None = None,
        max_map_size: int | None = 256,
        fpr_limit: float = 0.3,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self._csv_path = Path(csv_path) if csv_path is not None else None
        self.max_map_size = max_map_size
        self.fpr_limit = fpr_limit
        self.results: dict[str, dict[str, float]] = {}
        self.csv_path: Path | None = None
        self.captured_raw_scores: bool | None = None
        self._states: dict[str, _CategoryState] = {}
        self._pending: _PendingBatch | None = None
        self._category_root: Path | None = None
        self._category_of: Callable[[str], str] | None = None

    # ------------------------------------------------------------------ hooks

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reset the accumulated state and find the dataset root."""
        del pl_module
        self._states = {}
        self._pending = None
        self.results = {}
        self.captured_raw_scores = None
        datamodule = getattr(trainer, "datamodule", None)
        datamodule_root = getattr(datamodule, "root", None)
        self._category_root = self.root or (Path(datamodule_root) if datamodule_root is not None else None)
        # a multi-root datamodule knows which root each category came from
        self._category_of = getattr(datamodule, "category_of", None) if self.root is None else None

    def on_test_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Store the previous batch: every batch-end hook (post-processing included) has run by now."""
        del trainer, pl_module, batch, batch_idx, dataloader_idx
        self._flush()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Capture the batch's scores now (before post-processing when registered on the Trainer)."""
        del trainer, pl_module, batch_idx, dataloader_idx
        self._flush()
        predictions = outputs if outputs is not None and hasattr(outputs, "image_path") else batch
        categories = [self._category(path) for path in predictions.image_path]
        scores = getattr(predictions, "pred_score", None)
        maps = getattr(predictions, "anomaly_map", None)
        self._pending = _PendingBatch(
            outputs=predictions,
            categories=categories,
            scores=None if scores is None else scores.detach().reshape(len(categories)).float().cpu().clone(),
            score_ref=scores,
            maps=None if maps is None else self._resize(maps.detach().float(), mode="area").cpu().clone(),
        )

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute, log and write the per-category table."""
        self._flush()
        if not self._states:
            return
        self.results = self.compute()
        logged = {
            f"{category}/{metric}": value
            for category, metrics in self.results.items()
            for metric, value in metrics.items()
            if metric not in {"n_images", "n_anomalous"}
        }
        pl_module.log_dict(logged, sync_dist=False)
        self.csv_path = self._csv_path or Path(trainer.default_root_dir) / "per_category_metrics.csv"
        self._write_csv(self.csv_path)
        temporary = _temporary_folder(self.csv_path)
        if temporary is None:
            logger.info("Per-category metrics written to %s", self.csv_path)
        else:
            # anomalib benchmark runs each job with default_root_dir in a TemporaryDirectory, deleted after the job
            logger.info(
                "Per-category metrics written to %s, inside the temporary folder %s, which its creator may delete "
                "(anomalib benchmark deletes it after the job): the same values are returned by the test as "
                "<category>/<metric> and mean/<metric> (anomalib benchmark: columns of its results.csv)",
                self.csv_path,
                temporary,
            )

    # ------------------------------------------------------------------ accumulation

    def _category(self, image_path: str) -> str:
        if self._category_of is not None:
            return self._category_of(image_path)
        return category_from_path(image_path, root=self._category_root)

    def _resize(self, tensor: torch.Tensor, mode: str) -> torch.Tensor:
        """``(B, [1,] H, W)`` -> ``(B, h, w)`` with ``max(h, w) <= max_map_size``."""
        tensor = tensor.reshape(tensor.shape[0], *tensor.shape[-2:])
        height, width = tensor.shape[-2:]
        if self.max_map_size is None or max(height, width) <= self.max_map_size:
            return tensor
        scale = self.max_map_size / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return F.interpolate(tensor.unsqueeze(1).float(), size=size, mode=mode).squeeze(1)

    def _flush(self) -> None:
        """Move the pending batch into the per-category state, reading its post-processed fields."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        outputs = pending.outputs
        # anomalib's PostProcessor assigns new tensors: a different object means we captured the raw scores.
        current_scores = getattr(outputs, "pred_score", None)
        post_processed_later = pending.score_ref is not None and current_scores is not pending.score_ref
        if self.captured_raw_scores is None:
            self.captured_raw_scores = post_processed_later
            if not post_processed_later and getattr(outputs, "pred_label", None) is not None:
                logger.warning(
                    "PerCategoryMetrics received scores that were already post-processed (clamped to [0, 1], "
                    "with ties): AUROC/AP may be underestimated. Pass it as a Trainer/Engine callback."
                )
        count = len(pending.categories)
        labels = _field(outputs, "gt_label", count)
        pred_labels = _field(outputs, "pred_label", count)
        masks = getattr(outputs, "gt_mask", None)
        pred_masks = getattr(outputs, "pred_mask", None)
        maps = pending.maps
        if masks is not None:
            masks = self._resize(masks.detach().float(), mode="nearest").cpu() > 0.5
            if maps is not None and maps.shape[-2:] != masks.shape[-2:]:
                maps = F.interpolate(maps.unsqueeze(1), size=masks.shape[-2:], mode="bilinear").squeeze(1)
        if pred_masks is not None:
            pred_masks = self._resize(pred_masks.detach().float(), mode="nearest").cpu() > 0.5
        for index, category in enumerate(pending.categories):
            state = self._states.setdefault(category, _CategoryState())
            if labels is not None:
                state.labels.append(labels[index : index + 1].long())
            if pending.scores is not None:
                state.scores.append(pending.scores[index : index + 1])
            if pred_labels is not None:
                state.pred_labels.append(pred_labels[index : index + 1].bool())
            if maps is not None and masks is not None:
                state.maps.append(maps[index : index + 1])
                state.masks.append(masks[index : index + 1])
                if pred_masks is not None and pred_masks.shape[-2:] == masks.shape[-2:]:
                    state.pred_masks.append(pred_masks[index : index + 1])

    # ------------------------------------------------------------------ metrics

    def compute(self) -> dict[str, dict[str, float]]:
        """Metrics of every category seen so far and their mean (NaN where undefined, ignored in the mean).

        Returns:
            dict[str, dict[str, float]]: category (sorted, then ``"mean"``) -> metric -> value, plus
            ``n_images`` and ``n_anomalous``.
        """
        results = {category: self._compute_category(self._states[category]) for category in sorted(self._states)}
        names = [*IMAGE_METRICS, *PIXEL_METRICS]
        mean: dict[str, float] = {}
        for name in names:
            values = [r[name] for r in results.values() if name in r and not math.isnan(r[name])]
            if values:
                mean[name] = sum(values) / len(values)
        mean["n_images"] = float(sum(r["n_images"] for r in results.values()))
        mean["n_anomalous"] = float(sum(r["n_anomalous"] for r in results.values()))
        results["mean"] = mean
        return results

    def _compute_category(self, state: _CategoryState) -> dict[str, float]:
        out: dict[str, float] = {"n_images": float(state.n_images), "n_anomalous": float(state.n_anomalous)}
        if not state.labels:
            return out
        labels = torch.cat(state.labels)
        both_classes = 0 < int(labels.sum()) < len(labels)
        if state.scores:
            scores = _min_max(torch.cat(state.scores))
            for name, metric in (
                ("image_AUROC", AUROC(fields=("pred_score", "gt_label"))),
                ("image_AUPR", AUPR(fields=("pred_score", "gt_label"))),
                ("image_F1Max", F1Max(fields=("pred_score", "gt_label"))),
            ):
                out[name] = _evaluate(metric, both_classes, pred_score=scores, gt_label=labels)
        if state.pred_labels and len(state.pred_labels) == len(state.labels):
            metric = F1Score(fields=("pred_label", "gt_label"))
            out["image_F1Score"] = _evaluate(metric, True, pred_label=torch.cat(state.pred_labels), gt_label=labels)
        if state.maps:
            masks = torch.cat(state.masks)
            maps = _min_max(torch.cat(state.maps))
            has_defect_pixels = bool(masks.any()) and not bool(masks.all())
            for name, factory in _PIXEL_SCORE_METRICS.items():
                metric = factory(self.fpr_limit)
                out[name] = _evaluate(metric, has_defect_pixels, anomaly_map=maps, gt_mask=masks.long())
            if state.pred_masks and len(state.pred_masks) == len(state.masks):
                metric = F1Score(fields=("pred_mask", "gt_mask"))
                out["pixel_F1Score"] = _evaluate(
                    metric,
                    True,
                    pred_mask=torch.cat(state.pred_masks),
                    gt_mask=masks.long(),
                )
        return out

    def _write_csv(self, path: Path) -> None:
        """Write ``results`` to ``path`` atomically (:func:`~anomalib_promptmad.infrastructure.atomic_write.write_text_atomic`)."""
        metrics = [m for m in (*IMAGE_METRICS, *PIXEL_METRICS) if any(m in r for r in self.results.values())]
        columns = ["category", "n_images", "n_anomalous", *metrics]
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(columns)
        for category, metrics in self.results.items():
            row: list[Any] = [category]
            for column in columns[1:]:
                value = metrics.get(column, float("nan"))
                row.append(int(value) if column.startswith("n_") else f"{value:.6f}")
            writer.writerow(row)
        write_text_atomic(path, table.getvalue())


_PIXEL_SCORE_METRICS: dict[str, Callable[[float], Any]] = {
    "pixel_AUROC": lambda _: AUROC(fields=("anomaly_map", "gt_mask")),
    "pixel_AUPR": lambda _: AUPR(fields=("anomaly_map", "gt_mask")),
    "pixel_AUPRO": lambda fpr_limit: AUPRO(fields=("anomaly_map", "gt_mask"), fpr_limit=fpr_limit),
    "pixel_F1Max": lambda _: F1Max(fields=("anomaly_map", "gt_mask")),
}


def _field(outputs: Any, name: str, count: int) -> torch.Tensor | None:
    """Per-image field ``(B,)`` on the CPU, or ``None`` when absent."""
    value = getattr(outputs, name, None)
    if value is None:
        return None
    return torch.as_tensor(value).detach().reshape(count).cpu()


def _min_max(values: torch.Tensor) -> torch.Tensor:
    """Order-preserving map of finite values into [0, 1] (constant input maps to 0)."""
    values = values.float()
    low, high = values.min(), values.max()
    if not torch.isfinite(low) or not torch.isfinite(high):
        msg = "PerCategoryMetrics: the model produced non-finite scores (NaN or inf)."
        raise ValueError(msg)
    if high == low:
        return torch.zeros_like(values)
    return ((values - low) / (high - low)).clamp(0.0, 1.0)


def _evaluate(metric: Any, defined: bool, **fields: torch.Tensor) -> float:
    """Update an anomalib metric with one batch of ``fields`` and compute it (NaN if undefined)."""
    if not defined:
        return float("nan")
    metric.update(SimpleNamespace(**fields))
    return float(metric.compute())


def _temporary_folder(path: Path) -> Path | None:
    """The folder made by ``tempfile.mkdtemp``/``TemporaryDirectory`` (``<tempdir>/tmpXXXXXXXX``) holding ``path``.

    Such a folder belongs to whoever made it and usually disappears with it; ``None`` when ``path`` is
    elsewhere (a user's results folder, or a named folder under the temporary directory such as pytest's).
    """
    try:
        relative = path.resolve().relative_to(Path(tempfile.gettempdir()).resolve())
    except ValueError:
        return None
    top = relative.parts[0] if len(relative.parts) > 1 else ""
    if _MKDTEMP_NAME.fullmatch(top) is None:
        return None
    return Path(tempfile.gettempdir()) / top
