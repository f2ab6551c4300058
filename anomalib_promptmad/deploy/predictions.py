# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-image prediction file (CSV) for ``anomalib predict`` and for exported models.

anomalib's ``predict`` writes heat-map overlays but no table of scores. :class:`PredictionCSVWriter`
writes ``predictions.csv`` (image path, score, label, inferred category) in the run's root folder.

Failure policy: an image that cannot be read stops the run **before anything is written**, with the
file named; the CSV is written at the very end into a temporary file that is then renamed over the
target, so a crash never leaves a half-written table.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from PIL import Image
from torch import nn

from anomalib_promptmad.infrastructure.atomic_write import write_text_atomic

__all__ = [
    "CSV_COLUMNS",
    "PREDICTIONS_FILE_NAME",
    "CategoryRecorder",
    "PredictionCSVWriter",
    "PredictionRow",
    "UnreadableImageError",
    "check_images_readable",
    "write_predictions_csv",
]

logger = logging.getLogger(__name__)

PREDICTIONS_FILE_NAME = "predictions.csv"
CSV_COLUMNS = ("image_path", "pred_score", "pred_label", "category")


class UnreadableImageError(ValueError):
    """An input image cannot be decoded."""


@dataclass(frozen=True)
class PredictionRow:
    """One line of the prediction file.

    Attributes:
        image_path: The input image.
        pred_score: Normalised anomaly score in [0, 1] (0.5 = the threshold learned on validation data).
        pred_label: ``True`` when the image is predicted anomalous.
        category: Category PromptMAD inferred for the image; ``""`` where the runtime cannot report it
            (ONNX / OpenVINO graphs output maps and scores only).
    """

    image_path: str
    pred_score: float
    pred_label: bool
    category: str = ""


_MAX_LISTED = 10


def check_images_readable(paths: Iterable[str | Path]) -> None:
    """Decode every image as anomalib's ``read_image`` does (PIL, RGB) and check its pixel format; raise once.

    A 16-bit or floating-point image decodes, but anomalib's reader clips it to white: it is refused with
    the message the training-data checks give (:func:`~anomalib_promptmad.data.validation.pixel_format_problem`).

    Args:
        paths: Image files.

    Raises:
        UnreadableImageError: Naming every unusable file (up to ten, then how many more) and the reason.
    """
    from anomalib_promptmad.data.validation import pixel_format_problem

    problems: list[str] = []
    for path in paths:
        try:
            with Image.open(path) as image:
                mode = image.mode
                image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            problems.append(f"cannot read image '{path}': {error}")
            continue
        problem = pixel_format_problem(path, mode)
        if problem:
            problems.append(problem)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        head = problems[0] if len(problems) == 1 else f"{len(problems)} input images cannot be used:\n  {listed}{more}"
        msg = f"{head}\nNo prediction was written; convert, replace or remove the file(s) and run again."
        raise UnreadableImageError(msg)


def write_predictions_csv(rows: Sequence[PredictionRow], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        rows: The predictions.
        path: Target CSV file; its folder is created.

    Returns:
        The path written.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([row.image_path, f"{row.pred_score:.6f}", int(row.pred_label), row.category])
    return write_text_atomic(path, buffer.getvalue())


def _find_promptmad_network(module: nn.Module) -> nn.Module | None:
    """The ``PromptMADModel`` inside a Lightning module or an exported torch model, if any."""
    for candidate in module.modules():
        if hasattr(candidate, "classify") and hasattr(candidate, "tokenizer") and hasattr(candidate, "prototypes"):
            return candidate
    return None


class CategoryRecorder:
    """Capture the category PromptMAD infers inside ``forward``, without a second pass.

    ``forward`` returns maps and scores only (the exported graph's contract), but it computes the
    category from the stride-16 features; a forward hook on the feature tokenizer keeps those features,
    and :meth:`categories` classifies them with the model's own prototypes (a matrix product).

    Args:
        module: A PromptMAD Lightning module (or anything holding a ``PromptMADModel``).
        names: Category names in index order (the module's ``categories`` when ``None``).
    """

    def __init__(self, module: nn.Module, names: Sequence[str] | None = None) -> None:
        self.network = _find_promptmad_network(module)
        self.names = list(names if names is not None else getattr(module, "categories", None) or [])
        self._features: torch.Tensor | None = None
        self._handle = self.network.tokenizer.register_forward_hook(self._keep) if self.network is not None else None

    def _keep(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        del module, inputs
        self._features = output

    def categories(self, count: int) -> list[str]:
        """Names of the categories inferred in the last forward pass (``""`` each where unknown).

        Args:
            count: Batch size expected.
        """
        features, self._features = self._features, None
        if self.network is None or not self.names or features is None or features.shape[0] != count:
            return [""] * count
        with torch.no_grad():
            indices = self.network.classify(features).tolist()
        return [self.names[index] if index < len(self.names) else "" for index in indices]

    def remove(self) -> None:
        """Detach the hook."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _dataset_image_paths(dataset: Any) -> list[str]:
    """Image paths of an anomalib ``PredictDataset`` or ``AnomalibDataset`` (empty when unknown)."""
    if hasattr(dataset, "image_filenames"):
        return [str(path) for path in dataset.image_filenames]
    samples = getattr(dataset, "samples", None)
    if samples is not None and "image_path" in getattr(samples, "columns", ()):
        return [str(path) for path in samples["image_path"]]
    return []


class PredictionCSVWriter(Callback):
    """Write ``predictions.csv`` (image path, score, label, inferred category) at the end of ``predict``.

    PromptMAD adds it to its own callbacks, so ``anomalib predict --model PromptMAD ...`` writes the file
    into the run folder (``trainer.default_root_dir``, beside anomalib's ``images/`` overlays). Before the
    first batch it decodes every image of the predict dataloaders, so an unreadable file stops the run
    with its name and before any overlay or table is written.

    Args:
        file_name: Name of the CSV file inside ``trainer.default_root_dir``, or an absolute path.
    """

    def __init__(self, file_name: str | Path = PREDICTIONS_FILE_NAME) -> None:
        self.file_name = Path(file_name)
        self.rows: list[PredictionRow] = []
        self._recorder: CategoryRecorder | None = None

    @property
    def state_key(self) -> str:
        """One state per file name (Lightning refuses two callbacks with the same key)."""
        return f"PredictionCSVWriter[{self.file_name}]"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check every input image, then start collecting rows and inferred categories."""
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, Sequence) else [loaders]
        for loader in loaders:
            check_images_readable(_dataset_image_paths(getattr(loader, "dataset", None)))
        self.rows = []
        self._recorder = CategoryRecorder(pl_module)
        overlays = Path(trainer.default_root_dir) / "images"
        earlier = sum(1 for path in overlays.rglob("*") if path.is_file()) if overlays.is_dir() else 0
        if earlier and trainer.is_global_zero:
            # anomalib's predict writes into the same folder every time (results/<model>/latest/images)
            logger.warning(
                "PromptMAD: %s already holds %d overlay file(s) of an earlier run; this run adds its own beside "
                "them (predictions.csv lists this run only). Pass --default_root_dir <new folder> to keep runs apart.",
                overlays,
                earlier,
            )

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Collect the batch's post-processed scores and labels."""
        del trainer, pl_module, batch_idx, dataloader_idx
        result = outputs if outputs is not None else batch
        scores = result.pred_score.detach().flatten().cpu().tolist()
        labels = (
            result.pred_label.detach().flatten().cpu().tolist()
            if result.pred_label is not None
            else [score >= 0.5 for score in scores]  # normalised scores: 0.5 is the learned threshold
        )
        paths = list(result.image_path) if result.image_path is not None else [""] * len(scores)
        categories = self._recorder.categories(len(scores)) if self._recorder else [""] * len(scores)
        self.rows.extend(
            PredictionRow(str(path), float(score), bool(label), category)
            for path, score, label, category in zip(paths, scores, labels, categories, strict=True)
        )

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the table (atomically) and detach the category hook."""
        del pl_module
        self._detach()
        if trainer.is_global_zero:
            target = self.file_name if self.file_name.is_absolute() else Path(trainer.default_root_dir) / self.file_name
            write_predictions_csv(self.rows, target)
            anomalous = sum(row.pred_label for row in self.rows)
            noun = "image" if len(self.rows) == 1 else "images"
            # anomalib itself says nothing about where its outputs went
            logger.info(
                "PromptMAD: %d %s, %d predicted anomalous -> %s (overlays: %s)",
                len(self.rows),
                noun,
                anomalous,
                target.resolve(),
                (Path(trainer.default_root_dir) / "images").resolve(),
            )

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """A failed run writes no table."""
        del trainer, pl_module, exception
        self._detach()
        self.rows = []

    def _detach(self) -> None:
        if self._recorder is not None:
            self._recorder.remove()
            self._recorder = None
