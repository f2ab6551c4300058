# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Calibration: the stage that fixes every buffer inference depends on, from normal training images.

Training moves the weights; what the trained network needs at inference is measured afterwards, on normal
images only (never on test data), in this order:

1. **Token statistics** (before the first training step): per-channel mean and standard deviation of the
   normal training tokens. Everything trained depends on them, so they are fitted once.
2. **Category prototypes**: the mean global descriptor of each category's training images (the network
   infers an image's category from the nearest one).
3. **Normal image prompts**: per category the medoid by descriptor, then up to ``prompt_candidates - 1``
   more, each the image farthest from those already taken (retrieval picks among them per test image).
4. **Map scales**: per category, the mean ``map_scale_quantile`` of the distance maps of up to
   ``calibration_images`` training images.
5. **Prompt-matching banks** (with prompt matching): per category the greedy coreset of the training images'
   patch embeddings, and the scale of ``M`` on normal images outside the bank (the validation split's normal
   images, else training images).
6. **Fusion rules**: per category, as ``fusion`` says (see :mod:`anomalib_promptmad.fusion_rule`).
7. **Thresholds**: per category, anomalib's F1-adaptive image and pixel thresholds on its validation images
   (see :mod:`anomalib_promptmad.category_thresholds`); 1 without a validation split.

:class:`~anomalib_promptmad.lightning_model.PromptMAD` builds a :class:`Calibrator` and calls it from its
Lightning hooks; it can also be run by hand (``PromptMAD.calibrate(train_data, validation=val_data)``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from anomalib_promptmad.category_thresholds import category_thresholds
from anomalib_promptmad.fusion_rule import FusionChoice, FusionRule, choose_category_rules
from anomalib_promptmad.matching import greedy_coreset_indices

if TYPE_CHECKING:
    from anomalib_promptmad.torch_model import PromptMADModel

__all__ = ["FUSION_MODES", "CalibrationSettings", "Calibrator"]

logger = logging.getLogger(__name__)

FusionMode = Literal["validation", "sum", "product"]
FUSION_MODES: tuple[str, ...] = ("validation", "sum", "product")

# images per calibration batch: memory, not results, depends on it
_BATCH_SIZE = 16


@dataclass(frozen=True)
class CalibrationSettings:
    """How calibration measures the inference buffers.

    Args:
        calibration_images: Normal images per category for the token statistics and the map scales.
        map_scale_quantile: Quantile of normal distances used as a category's map scale.
        matching_coreset_ratio: Share of each category's normal patches kept in its matching bank.
        prompt_candidates: Normal image prompts kept per category.
        fusion: ``"validation"`` (each category's best rule on the validation split), ``"sum"`` (the fixed
            ``fixed_rule``) or ``"product"`` (``D * P``).
        fixed_rule: The rule of ``fusion="sum"``, and of a category whose validation images have no defect.
    """

    calibration_images: int = 32
    map_scale_quantile: float = 0.99
    matching_coreset_ratio: float = 0.1
    prompt_candidates: int = 1
    fusion: FusionMode = "validation"
    fixed_rule: FusionRule = field(default_factory=FusionRule)

    def __post_init__(self) -> None:
        if self.fusion not in FUSION_MODES:
            msg = f"fusion must be one of {list(FUSION_MODES)}, got {self.fusion!r}"
            raise ValueError(msg)
        if not 0 < self.matching_coreset_ratio <= 1:
            msg = f"matching_coreset_ratio must be in (0, 1], got {self.matching_coreset_ratio}"
            raise ValueError(msg)
        if self.prompt_candidates < 1:
            msg = f"prompt_candidates must be >= 1, got {self.prompt_candidates}"
            raise ValueError(msg)


class Calibrator:
    """Fits a :class:`PromptMADModel`'s inference buffers from anomalib datasets of one model's categories.

    Args:
        network: The network to calibrate (its buffers are set in place).
        categories: Category names in index order.
        settings: What to measure and how.
        network_input: Turns a dataset batch's images into network input (resize, device).
        category_indices: ``(paths) -> (B,)`` category index of each image path.
    """

    def __init__(
        self,
        network: PromptMADModel,
        categories: Sequence[str],
        settings: CalibrationSettings,
        network_input: Callable[[torch.Tensor], torch.Tensor],
        category_indices: Callable[[Sequence[str]], torch.Tensor],
    ) -> None:
        self.network = network
        self.categories = list(categories)
        self.settings = settings
        self.network_input = network_input
        self.category_indices = category_indices

    @torch.no_grad()
    def fit_token_statistics(self, dataset: Any) -> None:  # noqa: ANN401 - any anomalib dataset
        """Standardisation statistics of the tokens from up to ``calibration_images`` images per category.

        A network that already has them (fitted before training, or restored) keeps them.
        """
        tokenizer = self.network.tokenizer
        if tokenizer.has_statistics:
            return
        taken: dict[int, int] = {}
        chosen = []
        for position, label in enumerate(self.category_indices(list(dataset.samples.image_path)).tolist()):
            if taken.get(label, 0) < self.settings.calibration_images:
                taken[label] = taken.get(label, 0) + 1
                chosen.append(position)
        loader = DataLoader(Subset(dataset, chosen), batch_size=_BATCH_SIZE, collate_fn=dataset.collate_fn)
        tokens = [
            self.network.unstandardized_tokens(self.network_input(batch.image))
            for batch in tqdm(loader, desc="PromptMAD token statistics", leave=False, disable=None)
        ]
        tokenizer.fit_statistics(torch.cat(tokens))
        logger.info("PromptMAD: token standardisation fitted on %d training images", len(chosen))

    @torch.no_grad()
    def calibrate(self, dataset: Any, validation: Any = None) -> dict[str, FusionChoice]:  # noqa: ANN401
        """Fit prototypes, prompts, map scales, matching banks, fusion rules and thresholds (module docstring).

        Args:
            dataset: Normal training images of every category.
            validation: Validation split (normals and defects with masks), or ``None``: it scales ``M``, sets
                the thresholds and, with ``fusion="validation"``, chooses the rules.

        Returns:
            Per category whose rule was chosen on validation data: the choice and every candidate's score.
        """
        was_training = self.network.training
        self.network.eval()
        try:
            self.fit_token_statistics(dataset)
            descriptor, label, patches, images = self._read_training_images(dataset)
            self.network.set_prototypes(
                torch.stack([descriptor[label == k].mean(0) for k in range(len(self.categories))])
            )
            self._set_prompt_candidates(dataset, descriptor, label)
            self.network.set_map_scale(
                torch.stack([
                    self.network.distance_quantile(images[k], self.settings.map_scale_quantile).mean()
                    for k in range(len(self.categories))
                ])
            )
            if self.network.uses_prompt_matching:
                self._set_matching_banks(patches, images, validation)
            ones = torch.ones(len(self.categories))
            self.network.set_thresholds(ones, ones)  # the maps the rules are chosen on do not depend on them
            rules, choices = self._fusion_rules(validation)
            self.network.set_fusion_rules(rules)
            self._set_thresholds(validation)
        finally:
            self.network.train(was_training)
        return choices

    def fusion_choices(self, validation: Any) -> dict[str, FusionChoice]:  # noqa: ANN401 - any anomalib dataset
        """Per category with anomalous validation pixels: its best rule and every candidate's score.

        Reads the validation images through the calibrated network; changes nothing.
        """
        was_training = self.network.training
        self.network.eval()  # in train mode the heads' batch-norm statistics would move
        try:
            return choose_category_rules(
                self.network, validation, self.categories, self.network_input, self.category_indices
            )
        finally:
            self.network.train(was_training)

    def _set_thresholds(self, validation: Any) -> None:
        """Each category's F1-adaptive thresholds on the validation split (1 without one)."""
        thresholds = category_thresholds(
            self.network, validation, len(self.categories), self.network_input, self.category_indices
        )
        self.network.set_thresholds(thresholds.image, thresholds.pixel)
        logger.info(
            "PromptMAD thresholds (fused image score / pixel value): %s",
            ", ".join(
                f"{name} {image:.3g} / {pixel:.3g}"
                for name, image, pixel in zip(
                    self.categories, thresholds.image.tolist(), thresholds.pixel.tolist(), strict=True
                )
            ),
        )

    def _read_training_images(
        self,
        dataset: Any,  # noqa: ANN401 - any anomalib dataset
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, list[torch.Tensor]], dict[int, torch.Tensor]]:
        """One pass over the training images.

        Returns:
            ``(descriptors (N, C), category labels (N,), matching patch embeddings per category, up to
            calibration_images network-input images per category)``.
        """
        loader = DataLoader(dataset, batch_size=_BATCH_SIZE, shuffle=False, collate_fn=dataset.collate_fn)
        descriptors, labels = [], []
        images_by_category: dict[int, list[torch.Tensor]] = {}
        patches: dict[int, list[torch.Tensor]] = {}
        for batch in tqdm(loader, desc="PromptMAD calibration (prototypes)", leave=False, disable=None):
            images = self.network_input(batch.image)
            category = self.category_indices(batch.image_path)
            levels, features = self.network.extract(images)
            descriptors.append(self.network.descriptor(features))
            labels.append(category)
            if self.network.uses_prompt_matching:
                embedding = self.network.matching_embedding(levels).permute(0, 2, 3, 1).flatten(1, 2).cpu()
                for rows, label in zip(embedding, category.tolist(), strict=True):
                    patches.setdefault(label, []).append(rows)
            for image, label in zip(images, category.tolist(), strict=True):
                kept = images_by_category.setdefault(label, [])
                if len(kept) < self.settings.calibration_images:
                    kept.append(image)
        label = torch.cat(labels)
        missing = [name for position, name in enumerate(self.categories) if not (label == position).any()]
        if missing:
            msg = f"no normal training images found for categories {missing}; cannot calibrate PromptMAD"
            raise RuntimeError(msg)
        return torch.cat(descriptors), label, patches, {k: torch.stack(v) for k, v in images_by_category.items()}

    def _set_prompt_candidates(self, dataset: Any, descriptor: torch.Tensor, label: torch.Tensor) -> None:  # noqa: ANN401
        """Per category: the medoid, then farthest-first by descriptor, up to ``prompt_candidates`` images."""
        chosen_by_category = []
        for k in range(len(self.categories)):
            members = torch.nonzero(label == k).flatten()
            similarity = descriptor[members] @ descriptor[members].T
            chosen = [int((descriptor[members] @ self.network.prototypes[k]).argmax())]
            while len(chosen) < min(self.settings.prompt_candidates, len(members)):
                closest = similarity[:, chosen].amax(dim=1)
                closest[chosen] = torch.inf
                chosen.append(int(closest.argmin()))
            chosen_by_category.append([int(members[index]) for index in chosen])
        width = max(len(chosen) for chosen in chosen_by_category)
        images = []
        valid = torch.zeros(len(chosen_by_category), width)
        for k, chosen in enumerate(chosen_by_category):
            padded = chosen + [chosen[0]] * (width - len(chosen))  # padding repeats the medoid, never retrieved
            valid[k, : len(chosen)] = 1
            images.append(self.network_input(torch.stack([dataset[index].image for index in padded])))
        self.network.set_prompt_images(torch.stack(images), valid)

    def _set_matching_banks(
        self,
        patches: dict[int, list[torch.Tensor]],
        images: dict[int, torch.Tensor],
        validation: Any,  # noqa: ANN401 - any anomalib dataset
    ) -> None:
        """Coreset each category's normal patches into its bank, then scale ``M`` on normals outside the bank."""
        banks = []
        for k, name in enumerate(self.categories):
            embedding = torch.cat(patches[k])
            if self.settings.matching_coreset_ratio < 1:
                logger.info("PromptMAD: prompt-matching coreset of '%s' (%d patches)", name, len(embedding))
                embedding = embedding[greedy_coreset_indices(embedding, self.settings.matching_coreset_ratio)]
            banks.append(embedding)
        self.network.set_matching_banks(banks)
        sizes = self.network.patch_bank.memory_bytes if self.network.patch_bank is not None else []
        logger.info(
            "PromptMAD prompt-matching banks: %s",
            ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in zip(self.categories, sizes, strict=True)),
        )
        held_out = self._validation_normals(validation)
        scales = []
        for k, name in enumerate(self.categories):
            normal = held_out.get(k)
            if normal is None:
                logger.info("PromptMAD: no held-out normal image of '%s'; M is scaled on training images.", name)
                normal = images[k]
            scales.append(self.network.matching_quantile(normal, self.settings.map_scale_quantile).mean())
        self.network.set_matching_scale(torch.stack(scales))

    def _validation_normals(self, validation: Any) -> dict[int, torch.Tensor]:  # noqa: ANN401 - any anomalib dataset
        """Up to ``calibration_images`` normal validation images per category, as network input."""
        if validation is None or len(validation) == 0:
            return {}
        loader = DataLoader(validation, batch_size=_BATCH_SIZE, shuffle=False, collate_fn=validation.collate_fn)
        kept: dict[int, list[torch.Tensor]] = {}
        for batch in loader:
            normal = batch.gt_label == 0
            if not bool(normal.any()):
                continue
            paths = [path for path, keep in zip(batch.image_path, normal.tolist(), strict=True) if keep]
            images = self.network_input(batch.image[normal])
            for image, label in zip(images, self.category_indices(paths).tolist(), strict=True):
                if len(kept.setdefault(label, [])) < self.settings.calibration_images:
                    kept[label].append(image)
        return {label: torch.stack(images) for label, images in kept.items()}

    def _fusion_rules(self, validation: Any) -> tuple[list[FusionRule], dict[str, FusionChoice]]:  # noqa: ANN401
        """One fusion rule per category, as ``fusion`` says (the network is calibrated up to the rules)."""
        count = len(self.categories)
        fixed = self.settings.fixed_rule
        if self.settings.fusion == "sum":
            return [fixed] * count, {}
        if self.settings.fusion == "product":
            return [FusionRule(product=True)] * count, {}
        if validation is None or len(validation) == 0:
            logger.warning(
                "PromptMAD: fusion='validation' but there is no validation split; every category uses %s. Use a "
                "datamodule with val_split_mode='synthetic' (MultiClassMVTecAD's default) or set fusion='sum'.",
                fixed,
            )
            return [fixed] * count, {}
        # the network's maps need a complete calibration: any rule will do until the chosen ones are set
        self.network.set_fusion_rules([fixed] * count)
        choices = self.fusion_choices(validation)
        rules = []
        for name in self.categories:
            if name not in choices:
                logger.warning(
                    "PromptMAD: the validation split has no anomalous pixel of '%s'; it uses the fixed rule %s.",
                    name,
                    fixed,
                )
                rules.append(fixed)
                continue
            choice = choices[name]
            logger.info(
                "PromptMAD fusion for '%s': %s (validation, worst defect family's mean of pixel AP and AUROC %.3f; "
                "fixed %s: %.3f)",
                name,
                choice.rule,
                choice.scores[choice.rule],
                fixed,
                choice.scores.get(fixed, float("nan")),
            )
            rules.append(choice.rule)
        return rules, choices
