# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category thresholds: each category's F1-adaptive threshold on its validation images lands at 0.5."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import binary_auroc

from anomalib_promptmad import PromptMAD
from anomalib_promptmad.category_thresholds import f1_adaptive_threshold


def _outputs(model: PromptMAD, dataset) -> dict[str, list[torch.Tensor]]:
    """Per category: image scores, image labels, maps and masks of ``dataset`` through ``model``'s network."""
    loader = DataLoader(dataset, batch_size=16, collate_fn=dataset.collate_fn)
    rows: dict[str, list[list[torch.Tensor]]] = {}
    with torch.no_grad():
        for batch in loader:
            predictions = model.model(model._network_input(batch.image))
            masks = None
            if batch.gt_mask is not None:
                masks = batch.gt_mask.float().reshape(len(batch.image), 1, *batch.gt_mask.shape[-2:])
                masks = F.interpolate(masks, size=predictions.anomaly_map.shape[-2:]) > 0.5
            for item, category in enumerate(model.category_indices(batch.image_path).tolist()):
                mask = masks[item] if masks is not None else torch.zeros_like(predictions.anomaly_map[item])
                row = [predictions.pred_score[item : item + 1], batch.gt_label[item : item + 1]]
                row += [predictions.anomaly_map[item].flatten(), mask.flatten().bool()]
                rows.setdefault(model.categories[category], []).append(row)
    return {name: [torch.cat(column) for column in zip(*items, strict=True)] for name, items in rows.items()}


def test_every_category_threshold_lands_at_one_half_and_no_ranking_moves(trained) -> None:
    """After fit, anomalib's F1-adaptive threshold of each category's own validation outputs is 0.5.

    The thresholds are those of the unthresholded outputs (independent check), and within a category the
    ranking of images and pixels is that of the unthresholded outputs (same AUROC).
    """
    model = trained.model.eval()
    validation = trained.datamodule.val_data
    calibrated = _outputs(model, validation)
    assert set(calibrated) == set(model.categories)
    raw_model = copy.deepcopy(model)
    ones = torch.ones(len(model.categories))
    raw_model.model.set_thresholds(ones, ones)
    raw = _outputs(raw_model, validation)
    for index, name in enumerate(model.categories):
        score, label, anomaly_map, mask = calibrated[name]
        assert f1_adaptive_threshold(score, label) == pytest.approx(0.5, abs=1e-5), name
        assert f1_adaptive_threshold(anomaly_map, mask) == pytest.approx(0.5, abs=1e-5), name
        raw_score, _, raw_map, _ = raw[name]
        image_threshold = f1_adaptive_threshold(raw_score, label)
        pixel_threshold = f1_adaptive_threshold(raw_map, mask)
        assert float(model.model.image_threshold[index]) == pytest.approx(image_threshold / (1 - image_threshold))
        assert float(model.model.pixel_threshold[index]) == pytest.approx(pixel_threshold / (1 - pixel_threshold))
        assert float(binary_auroc(score, label)) == pytest.approx(float(binary_auroc(raw_score, label)), abs=1e-6)
        assert float(binary_auroc(anomaly_map, mask.long())) == pytest.approx(
            float(binary_auroc(raw_map, mask.long())), abs=1e-6
        )
    # the thresholds differ between categories: one threshold for all would not be the same thing
    assert not torch.allclose(model.model.image_threshold, model.model.image_threshold[0].expand(len(model.categories)))


def test_a_category_without_validation_defects_keeps_its_normal_images_unflagged(trained) -> None:
    """The fallback per category (anomalib's): the highest normal validation score becomes the threshold."""
    model = PromptMAD.load_from_checkpoint(trained.checkpoint).eval()
    validation = copy.deepcopy(trained.datamodule.val_data)
    first = model.categories[0]
    samples = validation.samples
    is_first = samples.image_path.map(lambda path: f"/{first}/" in Path(path).as_posix())
    validation.samples = samples[~is_first | (samples.label_index == 0)].reset_index(drop=True)
    model.calibrate(dataset=trained.datamodule.train_data, validation=validation)
    score, label, anomaly_map, _ = _outputs(model, validation)[first]
    assert not label.any()
    assert float(score.max()) == pytest.approx(0.5, abs=1e-5)
    assert float(anomaly_map.max()) == pytest.approx(0.5, abs=1e-5)


def test_checkpoint_from_before_thresholds_loads_with_its_unthresholded_outputs(
    trained,
    test_images,
    tmp_path: Path,
) -> None:
    """A checkpoint saved before the thresholds existed gives the outputs it gave then (thresholds of 1)."""
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    del checkpoint["state_dict"]["model.image_threshold"], checkpoint["state_dict"]["model.pixel_threshold"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    loaded = PromptMAD.load_from_checkpoint(old).eval()
    count = len(trained.model.categories)
    assert torch.equal(loaded.model.image_threshold, torch.ones(count))
    assert torch.equal(loaded.model.pixel_threshold, torch.ones(count))
    reference = PromptMAD.load_from_checkpoint(trained.checkpoint).eval()
    reference.model.set_thresholds(torch.ones(count), torch.ones(count))
    images, _ = test_images
    with torch.no_grad():
        expected, actual = reference.model(images), loaded.model(images)
    assert torch.equal(actual.anomaly_map, expected.anomaly_map)
    assert torch.equal(actual.pred_score, expected.pred_score)
