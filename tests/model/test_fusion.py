# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Per-category fusion rules: the AP used to rank them, their choice on validation data, and the trained model."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalib_promptmad import PromptMAD
from anomalib_promptmad.anomaly_map import GEOMETRIC_FLOOR
from anomalib_promptmad.fusion_rule import (
    CANDIDATE_RULES,
    FusionRule,
    candidate_rules,
    choose_fusion_rule,
    family_ranking_quality,
    ranking_quality,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_quality_is_the_mean_of_scikit_learns_ap_and_auroc_with_ties(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (400,), generator=generator).float()  # many tied scores
    labels = torch.rand(400, generator=generator) < 0.2
    expected = 0.5 * (
        average_precision_score(labels.numpy(), scores.numpy()) + roc_auc_score(labels.numpy(), scores.numpy())
    )
    assert ranking_quality(scores, labels) == pytest.approx(expected, abs=1e-6)  # torchmetrics sums in float32


def _maps(distance_values: dict[str, float], probability_values: dict[str, float]):
    """Maps of 4 images with an anomaly in region A and distractors in regions B and C."""
    regions = {"A": (slice(0, 4), slice(0, 4)), "B": (slice(8, 12), slice(8, 12)), "C": (slice(4, 8), slice(10, 14))}
    distance = torch.full((4, 1, 16, 16), 0.1)
    probability = torch.zeros(4, 1, 16, 16)
    mask = torch.zeros(4, 1, 16, 16, dtype=torch.bool)
    for name, (rows, cols) in regions.items():
        distance[..., rows, cols] = distance_values.get(name, 0.1)
        probability[..., rows, cols] = probability_values.get(name, 0.0)
    mask[..., regions["A"][0], regions["A"][1]] = True
    return distance, probability, mask


def test_choose_fusion_rule_takes_the_map_that_localises() -> None:
    # the distance map finds the defect, the probability is noise: distance only
    distance, _, mask = _maps({"A": 2.0}, {})
    rule, _ = choose_fusion_rule(distance, torch.rand(distance.shape, generator=torch.Generator().manual_seed(0)), mask)
    assert rule == FusionRule(segmentation_weight=0.0)
    # the probability finds it, the distance fires on other structure: segmentor only
    distance, probability, mask = _maps({"A": 1.0, "B": 50.0}, {"A": 0.9})
    rule, _ = choose_fusion_rule(distance, probability, mask)
    assert rule == FusionRule(segmentation_weight=1.0)


def test_choose_fusion_rule_takes_the_product_where_no_sum_separates() -> None:
    # each map has its own false alarm (D on B, P on C): no weighted sum ranks A above both, the product does
    distance, probability, mask = _maps({"A": 1.0, "B": 3.0}, {"A": 0.5, "C": 0.9})
    rule, scores = choose_fusion_rule(distance, probability, mask)
    assert rule == FusionRule(product=True)
    assert scores[rule] == pytest.approx(1.0)
    # the geometric mean D^0.5 * P^0.5 ranks as the product does; the product comes first among equals
    assert scores[FusionRule(segmentation_weight=0.5, geometric=True)] == pytest.approx(1.0)
    sums = [score for candidate, score in scores.items() if not candidate.product and not candidate.geometric]
    assert max(sums) < 0.9
    assert set(scores) == set(CANDIDATE_RULES)


def test_choose_fusion_rule_takes_a_geometric_mean_where_neither_a_sum_nor_the_product_separates() -> None:
    # D fires far more on B than on the defect A, with P low there; P fires on C: only P-heavy powers rank A first
    distance, probability, mask = _maps({"A": 1.0, "B": 10.0}, {"A": 0.5, "B": 0.06, "C": 0.9})
    rule, scores = choose_fusion_rule(distance, probability, mask)
    assert rule.geometric and 0.5 < rule.segmentation_weight < 1.0
    assert scores[rule] == pytest.approx(1.0)
    assert max(score for candidate, score in scores.items() if not candidate.geometric) < 0.9
    fused = rule.apply(distance, probability)
    expected = distance ** rule.distance_weight * probability.clamp_min(GEOMETRIC_FLOOR) ** rule.segmentation_weight
    assert torch.allclose(fused, expected, rtol=1e-5)


def test_choose_fusion_rule_takes_the_matching_map_where_only_it_localises() -> None:
    distance, probability, mask = _maps({"B": 5.0}, {"C": 0.9})  # D and P fire elsewhere
    matching = torch.where(mask, 3.0, 0.2)
    rule, scores = choose_fusion_rule(distance, probability, mask, candidate_rules(with_matching=True), matching)
    assert rule.matching_weight > 0 and scores[rule] == pytest.approx(1.0)
    assert scores[FusionRule(segmentation_weight=0.0, matching_weight=1.0)] == pytest.approx(1.0)
    assert max(score for candidate, score in scores.items() if not candidate.matching_weight) < 0.9
    assert len(scores) == 66 + 1 + 63  # sums on the simplex grid, the product, geometric means of 2 or 3 maps
    with pytest.raises(ValueError, match="no M maps"):
        choose_fusion_rule(distance, probability, mask, candidate_rules(with_matching=True))


def _two_families() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """4 normal images, 2 with large defects only ``P`` finds, 2 with small ones only ``D`` finds.

    ``D`` also fires on a row of each normal image, so pooled pixels (dominated by the large defects) favour ``P``.
    """
    generator = torch.Generator().manual_seed(0)
    distance = 0.5 * torch.rand(8, 1, 16, 16, generator=generator)
    probability = 0.5 * torch.rand(8, 1, 16, 16, generator=generator)
    mask = torch.zeros(8, 1, 16, 16, dtype=torch.bool)
    mask[4:6, :, :8, :8] = True  # family "large"
    mask[6:8, :, 12:14, 12:14] = True  # family "small"
    probability[4:6][mask[4:6]] = 1.0
    distance[6:8][mask[6:8]] = 1.0
    distance[:4, :, 0, :] = 1.0  # D's false alarms on normal images
    return distance, probability, mask, ["normal"] * 4 + ["large"] * 2 + ["small"] * 2


def test_choose_fusion_rule_by_families_takes_the_rule_that_works_for_every_family() -> None:
    distance, probability, mask, families = _two_families()
    robust, scores = choose_fusion_rule(distance, probability, mask, families=families)
    assert 0.0 < robust.segmentation_weight < 1.0 and not robust.product  # both maps: each finds one family
    per_family = family_ranking_quality(robust.apply(distance, probability), mask, families)
    assert scores[robust] == pytest.approx(min(per_family))
    assert set(scores) == set(CANDIDATE_RULES)
    # pooled pixels lean to P, which ranks the many large-defect pixels first, and do worse on the small family
    pooled, _ = choose_fusion_rule(distance, probability, mask)
    assert pooled.segmentation_weight > robust.segmentation_weight
    pooled_family = family_ranking_quality(pooled.apply(distance, probability), mask, families)
    assert min(pooled_family) < min(per_family)
    p_only = family_ranking_quality(FusionRule(segmentation_weight=1.0).apply(distance, probability), mask, families)
    assert min(p_only) < 0.35  # P alone misses the small defects
    with pytest.raises(ValueError, match="one family per image"):
        choose_fusion_rule(distance, probability, mask, families=families[:-1])


def test_fusion_rule_names_and_limits() -> None:
    assert str(FusionRule(segmentation_weight=0.2, matching_weight=0.5)) == "0.3 D + 0.2 P + 0.5 M"
    assert str(FusionRule(segmentation_weight=0.0)) == "D only"
    assert str(FusionRule(product=True)) == "D * P"
    assert str(FusionRule(segmentation_weight=0.4, matching_weight=0.6, geometric=True)) == "P^0.4 * M^0.6"
    assert str(FusionRule(segmentation_weight=0.2, matching_weight=0.5, geometric=True)) == "D^0.3 * P^0.2 * M^0.5"
    with pytest.raises(ValueError, match="matching_weight must be in"):
        FusionRule(segmentation_weight=0.6, matching_weight=0.5)
    with pytest.raises(ValueError, match="not both"):
        FusionRule(product=True, geometric=True)


def test_choose_fusion_rule_needs_anomalous_pixels() -> None:
    distance, probability, mask = _maps({"A": 1.0}, {})
    with pytest.raises(ValueError, match="no anomalous pixel"):
        choose_fusion_rule(distance, probability, torch.zeros_like(mask))


def test_fusion_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FusionRule(segmentation_weight=1.5)
    with pytest.raises(ValueError, match="fusion must be one of"):
        PromptMAD(fusion="average", backbone="tf_efficientnet_lite0", backbone_weights="none")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PromptMAD(segmentation_weight=2.0, backbone="tf_efficientnet_lite0", backbone_weights="none")


def test_trained_model_chose_each_rule_on_the_validation_split(trained) -> None:
    """After fit, every category has the rule with the best validation score, and the checkpoint keeps it."""
    model = trained.model
    assert set(model.fusion_scores) == set(model.categories)
    for category, rule in zip(model.categories, model.model.fusion_rules, strict=True):
        scores = model.fusion_scores[category]
        assert len(scores) == len(candidate_rules(with_matching=model.model.uses_prompt_matching))
        assert scores[str(rule)] == max(scores.values())
    loaded = PromptMAD.load_from_checkpoint(trained.checkpoint)
    assert loaded.model.fusion_rules == model.model.fusion_rules


def test_fixed_fusion_modes_and_missing_validation(trained, caplog: pytest.LogCaptureFixture) -> None:
    train_data = trained.datamodule.train_data
    count = len(trained.model.categories)
    product = PromptMAD.load_from_checkpoint(trained.checkpoint, fusion="product")
    product.calibrate(dataset=train_data)
    assert product.model.fusion_rules == [FusionRule(product=True)] * count
    fixed = PromptMAD.load_from_checkpoint(trained.checkpoint, fusion="sum", segmentation_weight=0.3)
    fixed.calibrate(dataset=train_data)
    assert fixed.model.fusion_rules == [FusionRule(segmentation_weight=0.3)] * count
    # no trainer, no validation split given: the fixed rule, with a warning saying how to get a choice
    chosen = PromptMAD.load_from_checkpoint(trained.checkpoint)
    with caplog.at_level(logging.WARNING, logger="anomalib_promptmad.calibration"):
        chosen.calibrate(dataset=train_data)
    assert chosen.model.fusion_rules == [FusionRule(segmentation_weight=0.5)] * count
    assert "no validation split" in caplog.text
    # given one, it chooses on it
    chosen.calibrate(dataset=train_data, validation=trained.datamodule.val_data)
    assert set(chosen.fusion_scores) == set(trained.model.categories)


def test_checkpoint_from_before_fusion_rules_loads_with_the_fixed_sum(trained, tmp_path: Path) -> None:
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    rule_buffers = ("fusion_segmentation_weight", "fusion_product", "fusion_matching_weight", "fusion_geometric")
    for key in (f"model.{name}" for name in rule_buffers):
        del checkpoint["state_dict"][key]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    loaded = PromptMAD.load_from_checkpoint(old)
    assert loaded.model.fusion_rules == [FusionRule(segmentation_weight=0.5)] * len(trained.model.categories)


def test_checkpoint_with_the_earlier_buffer_names_loads_with_its_rules(trained, tmp_path: Path) -> None:
    """Checkpoints saved when the rule buffers were ``fusion_weight`` / ``fusion_matching`` keep their rules."""
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    state["model.fusion_weight"] = state.pop("model.fusion_segmentation_weight")
    state["model.fusion_matching"] = state.pop("model.fusion_matching_weight")
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert PromptMAD.load_from_checkpoint(old).model.fusion_rules == trained.model.model.fusion_rules


def test_checkpoint_from_before_prompt_retrieval_loads_with_its_single_prompt(trained, test_images, tmp_path: Path) -> None:
    """Checkpoints that held one ``(K, C, h, w)`` prompt per category load as one candidate each."""
    checkpoint = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    state["model.prompt_features"] = state["model.prompt_features"][:, 0]
    state["model.prompt_memory"] = state["model.prompt_memory"][:, 0]
    del state["model.prompt_descriptors"], state["model.prompt_valid"], state["model.fusion_matching_weight"]
    del state["model.fusion_geometric"]  # geometric rules came later still
    checkpoint["hyper_parameters"]["retrieved_prompts"] = 1
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    loaded = PromptMAD.load_from_checkpoint(old).eval()
    assert loaded.model.prompt_memory.shape[1] == 1
    assert loaded.model.fusion_rules == [
        FusionRule(segmentation_weight=rule.segmentation_weight, product=rule.product)
        for rule in trained.model.model.fusion_rules
    ]
    images, _ = test_images
    with torch.no_grad():
        assert torch.isfinite(loaded.model(images).anomaly_map).all()


def test_fusion_figure_shows_both_maps_and_both_rules(trained, tmp_path: Path) -> None:
    """``scripts/fusion_maps.py`` draws a defective and a good image per category and writes one PNG."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "fusion_maps.py"
    spec = importlib.util.spec_from_file_location("fusion_maps", script)
    assert spec is not None and spec.loader is not None
    fusion_maps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fusion_maps)
    rows = fusion_maps.figure_rows(trained.model, trained.datamodule)
    assert [row["category"] for row in rows] == [c for c in sorted(trained.model.categories) for _ in range(2)]
    for row in rows:
        assert row["D"].shape == row["P"].shape == row["chosen"].shape == row["mask"].shape
        assert row["rule"] == trained.model.model.fusion_rules[trained.model.categories.index(row["category"])]
    choices = trained.model.validation_fusion_choices(trained.datamodule.val_data)
    assert {name: rule for name, (rule, _) in choices.items()} == dict(
        zip(trained.model.categories, trained.model.model.fusion_rules, strict=True)
    )
    scores = {name: ap for name, (_, ap) in choices.items()}
    output = fusion_maps.draw(rows, scores, tmp_path / "figures" / "fusion.png", credit="generated data")
    assert output.read_bytes().startswith(b"\x89PNG")
    assert [path.name for path in output.parent.iterdir()] == ["fusion.png"]  # no temporary file left
