# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Picture of what each category's fusion rule does: the maps it combines (D, P and, with prompt matching, M)
and the result.

For a trained PromptMAD checkpoint and its MVTec-layout data, one row per chosen test image (per category,
its first defective image and its first good one, in path order):

    image | ground truth | D (scaled distance) | P (pixel-head probability) | fixed sum 0.5 D + 0.5 P | chosen rule

Colour scales: P is shown on [0, 1]; D and the fused maps are stretched from their 1st to their 99.9th
percentile over the category's rows, so the same colour means the same value within a category. Under
the fused maps: each rule's validation score (the worst defect family's mean of pixel AP and AUROC, re-measured on the
validation split, never on test data).

Usage:
    python scripts/fusion_maps.py CHECKPOINT --root ../shared/data/mvtec_ad_256 \
        --categories bottle pill --output docs/images/fusion_maps.png \
        --credit "MVTec AD images CC BY-NC-SA 4.0, MVTec Software GmbH"
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from anomalib_promptmad import MultiClassMVTecAD, PromptMAD
from anomalib_promptmad.fusion_rule import FusionRule
from anomalib_promptmad.infrastructure.atomic_write import write_atomic

_COLUMNS = (
    "image",
    "ground truth",
    "D: distance / scale",
    "P: probability",
    "M: matching / scale",
    "fixed 0.5 D + 0.5 P",
    "chosen rule",
)


def figure_rows(model: PromptMAD, dataset: MultiClassMVTecAD) -> list[dict]:
    """Per category, its first defective and first good test image with D, P and both fusions."""
    was_training = model.training
    model.eval()  # in train mode the forward would update the heads' batch-norm statistics
    try:
        return _collect_rows(model, dataset)
    finally:
        model.train(was_training)


def _collect_rows(model: PromptMAD, dataset: MultiClassMVTecAD) -> list[dict]:
    test = dataset.test_data
    table = test.samples.reset_index(drop=True)
    resize = model.pre_processor.transform
    rows = []
    for category in sorted(table["category"].unique()):
        members = table[table["category"] == category].sort_values("image_path")
        for label in (1, 0):
            chosen = members[members["label_index"] == label]
            if len(chosen) == 0:
                continue
            item = test[int(chosen.index[0])]
            image = resize(item.image.unsqueeze(0))
            with torch.no_grad():
                distance, probability, matching, inferred = model.model.component_maps(image)
            index = model.categories.index(category)
            rule = model.model.fusion_rules[index]
            mask = item.gt_mask if item.gt_mask is not None else torch.zeros(item.image.shape[-2:])
            rows.append(
                {
                    "category": category,
                    "name": Path(item.image_path).parent.name + "/" + Path(item.image_path).stem,
                    "image": image[0].permute(1, 2, 0).clamp(0, 1).numpy(),
                    "mask": F.interpolate(mask.float()[None, None], size=image.shape[-2:])[0, 0].numpy(),
                    "D": distance[0, 0].numpy(),
                    "P": probability[0, 0].numpy(),
                    "M": (matching if matching is not None else torch.zeros_like(distance))[0, 0].numpy(),
                    "fixed": FusionRule(segmentation_weight=0.5).apply(distance, probability)[0, 0].numpy(),
                    "chosen": rule.apply(distance, probability, matching)[0, 0].numpy(),
                    "rule": rule,
                    "inferred": model.categories[int(inferred[0])],
                },
            )
    return rows


def draw(
    rows: list[dict],
    scores: Mapping[str, Mapping[FusionRule, float]],
    output: Path,
    credit: str = "",
) -> Path:
    """Draw the figure and write it atomically.

    Args:
        rows: From :func:`figure_rows`.
        scores: Per category, every rule's validation score, the mean of pixel AP and pixel AUROC
            (``PromptMAD.validation_fusion_choices``).
        output: PNG path.
        credit: Image credit for the title.
    """
    span = {}
    for key in ("D", "M", "fixed", "chosen"):
        for category in {row["category"] for row in rows}:
            values = np.concatenate([row[key].ravel() for row in rows if row["category"] == category])
            low, high = np.percentile(values, [1.0, 99.9])
            span[key, category] = (float(low), max(float(high - low), 1e-6))

    def stretched(row: dict, key: str) -> np.ndarray:
        low, width = span[key, row["category"]]
        return (row[key] - low) / width

    figure, axes = plt.subplots(len(rows), len(_COLUMNS), figsize=(2.0 * len(_COLUMNS), 2.2 * len(rows)))
    axes = np.atleast_2d(axes)
    for row_axes, row in zip(axes, rows, strict=True):
        category = row["category"]
        category_scores = scores.get(category, {})
        chosen_ap = category_scores.get(row["rule"], float("nan"))
        fixed_ap = category_scores.get(FusionRule(segmentation_weight=0.5), float("nan"))
        panels = [
            (row["image"], None),
            (row["mask"], "gray"),
            (stretched(row, "D"), "jet"),
            (row["P"], "jet"),
            (stretched(row, "M"), "jet"),
            (stretched(row, "fixed"), "jet"),
            (stretched(row, "chosen"), "jet"),
        ]
        for axis, (panel, cmap) in zip(row_axes, panels, strict=True):
            axis.imshow(panel, cmap=cmap, vmin=0.0, vmax=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(f"{category}\n{row['name']}", fontsize=8)
        row_axes[5].set_xlabel(f"val worst family {fixed_ap:.3f}", fontsize=8)
        row_axes[6].set_xlabel(f"{row['rule']}\nval worst family {chosen_ap:.3f}", fontsize=8)
    for axis, title in zip(axes[0], _COLUMNS, strict=True):
        axis.set_title(title, fontsize=9)
    figure.suptitle(f"PromptMAD fusion per category{f' ({credit})' if credit else ''}", fontsize=9)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, lambda file: figure.savefig(file, format="png", dpi=110))
    plt.close(figure)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a trained PromptMAD checkpoint (.ckpt)")
    parser.add_argument("--root", type=Path, required=True, help="MVTec-layout data root")
    parser.add_argument("--categories", nargs="+", default=None, help="default: the checkpoint's categories")
    parser.add_argument("--output", type=Path, default=Path("fusion_maps.png"))
    parser.add_argument("--credit", default="", help="image credit for the title (e.g. the dataset licence)")
    args = parser.parse_args()
    if not args.checkpoint.is_file():
        parser.error(f"checkpoint not found: {args.checkpoint}")
    model = PromptMAD.load_from_checkpoint(args.checkpoint).eval()
    datamodule = MultiClassMVTecAD(
        root=args.root,
        categories=args.categories or model.categories,
        eval_batch_size=16,
        num_workers=0,
    )
    datamodule.setup()
    # every rule's validation score for the captions; the rules drawn are the checkpoint's own
    scores = {name: ap for name, (_, ap) in model.validation_fusion_choices(datamodule.val_data).items()}
    print(draw(figure_rows(model, datamodule), scores, args.output, args.credit))


if __name__ == "__main__":
    main()
