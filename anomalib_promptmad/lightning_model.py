# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD: cross-modal (text + image) prompting for multi-class anomaly localisation.

Paper: McCain & Kashiani, "PromptMAD: Cross-Modal Prompting for Multi-Class Visual Anomaly
Localization", arXiv 2601.22492 (2026), built on OneNIP (Gao et al., ECCV 2024).

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_promptmad import MultiClassMVTecAD, PromptMAD
    >>> datamodule = MultiClassMVTecAD(root="./datasets/MVTecAD", categories=["bottle", "pill"])  # doctest: +SKIP
    >>> model = PromptMAD(max_epochs=20)  # doctest: +SKIP
    >>> Engine().train(model=model, datamodule=datamodule)  # doctest: +SKIP

From the command line (the package registers the short name with the stock ``anomalib`` command):

    anomalib train --model PromptMAD --data MultiClassMVTecAD --data.categories '[bottle, pill]'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import AUPR, AUPRO, AUROC, Evaluator, F1Max, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torchvision.transforms.v2 import Resize

from anomalib_promptmad.calibration import CalibrationSettings, Calibrator
from anomalib_promptmad.callbacks.per_category_metrics import PerCategoryMetrics
from anomalib_promptmad.data.category import (
    NO_CATEGORIES,
    category_indices,
    check_known_categories,
    datamodule_categories,
)
from anomalib_promptmad.data.synthetic import DEFAULT_CHANGE_THRESHOLD, AnomalySynthesizer
from anomalib_promptmad.deploy.migration import migrate_checkpoint
from anomalib_promptmad.deploy.mixin import DeploymentMixin
from anomalib_promptmad.fusion_rule import FusionChoice, FusionRule
from anomalib_promptmad.infrastructure.checkpoint_io import install_checkpoint_safety, use_readable_checkpoint_errors
from anomalib_promptmad.infrastructure.precision import check_precision, resolve_training_precision, training_autocast
from anomalib_promptmad.infrastructure.registration import publish
from anomalib_promptmad.infrastructure.training_guards import check_finite_losses, reseed_for_epoch, run_seed
from anomalib_promptmad.losses import PromptMADLoss
from anomalib_promptmad.post_processor import OrderPreservingPostProcessor
from anomalib_promptmad.prompts import PromptLibrary
from anomalib_promptmad.prompts.category_embeddings import category_text_embeddings, dataset_prompt_file
from anomalib_promptmad.torch_model import PromptMADModel
from anomalib_promptmad.training_inputs import TrainingInputs

__all__ = ["PromptMAD"]

logger = logging.getLogger(__name__)

# Checkpoint key of the training prompt bank (category index -> stacked recent normal features).
_PROMPT_BANK_KEY = "promptmad_prompt_bank"

class PromptMAD(DeploymentMixin, AnomalibModule):
    """PromptMAD Lightning module.

    One model serves every category it was trained on (the unified setting). Training draws a normal
    image prompt of the same category and a synthetic anomaly for each image; after training the model
    fixes one prompt per category, the category prototypes and the map scales from normal training
    images (never from test data).

    Args:
        image_size: Input size ``(H, W)``, multiples of 16 (OneNIP: 224, 256 or 320).
        categories: Category names in index order. ``None`` takes them from the datamodule at fit time
            (``datamodule.categories`` or ``datamodule.category``); they are then saved with the model.
        backbone: timm backbone name (frozen).
        layers: Backbone levels (default: strides 2, 4, 8, 16 as in OneNIP).
        backbone_weights: ``"auto"`` (offline packaged weights where available), ``"packaged"``,
            ``"timm"``, ``"none"`` or a local weights file.
        text_encoder: Text encoder spec (``"auto"``, ``"open_clip:ViT-B-16:openai"``, ``"minilm"``, ...).
            The encoder actually used is written back to the hyper-parameters.
        prompt_library: User prompt YAML file(s) extending or overriding the packaged catalogues (relative paths
            are read from the current directory). ``None``: ``<datamodule root>/prompts.yaml`` where it exists.
        hidden_dim: Transformer width.
        num_heads: Attention heads.
        num_encoder_layers: Encoder depth.
        num_decoder_layers: Two-way decoder depth.
        dim_feedforward: FFN width.
        dropout: Dropout probability.
        neighbour_size: Blocked attention window (``None``: OneNIP's ``grid // 2``).
        jitter_scale: Feature-jitter scale.
        jitter_probability: Chance of jitter per step.
        use_text_prompts: Cross-modal text prompts (ablation switch).
        use_segmentor: Text-guided segmentor; ``False`` uses OneNIP's refiner (ablation switch).
        diffusion_steps: Diffusion refinement steps; 0 switches it off (ablation switch).
        diffusion_beta_range: Linear beta schedule ``(start, end)``.
        segmentor_dim: Segmentor width.
        fusion: How each category's distance map ``D`` and pixel-head probability ``P`` are fused:
            ``"validation"`` (default) picks, per category, the rule that ranks the validation split's pixels
            best (held-out normals plus synthetic defects) among the sums ``(1 - w) * D + w * P`` (``+ w_M * M``
            with prompt matching) on a 0.1 grid, the product ``D * P`` and the weighted geometric means on the
            same grid; ``"sum"`` uses ``segmentation_weight``;
            ``"product"`` uses ``D * P``. See :mod:`anomalib_promptmad.fusion_rule`.
        segmentation_weight: Weight ``w`` of ``P`` for ``fusion="sum"``, and the fallback rule for a category
            whose validation images have no anomalous pixel.
        score_pool_size: Average-pool window of the image score.
        reconstruction_weight: Loss weight of the feature restoration MSE.
        focal_weight: Loss weight of the focal loss; 0 switches it off (ablation switch).
        dice_weight: Loss weight of the Dice loss.
        focal_alpha: Focal-loss weight of anomalous pixels.
        focal_gamma: Focal-loss focusing parameter.
        cutpaste_probability: Share of synthetic anomalies made by CutPaste (patch and scar); the other training
            families share the rest. ``None`` (default) keeps the weights of ``anomaly_families``.
        texture_dir: Folder of texture images (e.g. DTD); ``None`` derives textures from the training images.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_epochs: Training length. ``None`` (default) trains as long as the trainer says
            (``--trainer.max_epochs`` / ``Engine(max_epochs=...)``; Lightning's default, 1000 as in OneNIP, when
            that is unset too). A number here is returned by :attr:`trainer_arguments` and so replaces the
            trainer's value.
        lr_decay_epoch: Epoch of the 10x learning-rate step (``None``: 80 % of the training length, as OneNIP).
        gradient_clip_val: Gradient-norm clip.
        map_scale_quantile: Quantile of normal distances used as each category's map scale.
        calibration_images: Normal training images per category used to measure the map scale.
        use_prompt_matching: Add the prompt-matching map ``M``: each patch's distance to the nearest normal patch
            of its inferred category (a coreset of the training images' locally aggregated features). Needs no
            training: with ``max_epochs=0`` the model is a class-aware memory-bank detector.
        matching_coreset_ratio: Share of each category's normal patches kept in its matching bank (greedy
            k-center coreset, anomalib's Patchcore rule; 1 keeps every patch).
        prompt_candidates: Normal image prompts kept per category (the medoid, then the most different
            images by global descriptor); 1 is OneNIP's single fixed prompt.
        retrieved_prompts: Prompts used per test image, the nearest candidates by global descriptor.
        token_resampling: How the backbone levels reach the stride-16 token grid: ``"area"`` (finer levels
            area-averaged, every level registered to its pixels) or ``"bilinear"`` (OneNIP's ``align_corners=True``
            resize, which point-samples the fine levels; checkpoints saved before this option load with it).
        standardize_tokens: Standardise each token channel with the mean and standard deviation of normal training
            tokens, measured once before training (up to ``calibration_images`` per category): the reconstruction
            loss and the distance map ``D`` then weigh every channel by its normal variation instead of being
            decided by the few channels of largest scale.
        segmentor_reads_features: Feed the segmentor the query features beside the reconstruction residual (the
            first design). ``False`` (default) makes the residual its only stride-16 evidence, so it cannot learn to
            spot synthetic artefacts in the raw appearance.
        feature_cache_mb: Memory budget (MB) for the frozen backbone's features of the clean training images,
            reused across epochs (about 0.8 MB per 256 px image with the default backbone); 0 switches the
            cache off. It is also off when the datamodule has training augmentations.
        anomaly_families: Training defect families and their relative weights (see
            :mod:`anomalib_promptmad.data.synthetic.families`); ``None`` is ``TRAINING_FAMILIES`` (CutPaste patch
            and scar, Perlin texture, missing parts; spots and scratches are opt-in). The validation split's default
            families (colour shifts, misplaced parts, foreign textures) are held out of it.
        change_threshold: Per-pixel colour change (in [0, 1]) a synthetic-defect pixel needs to be labelled.
        foreground_placement: Put synthetic defects on each category's object, estimated at fit start from its
            training images (textures and unreliable estimates: anywhere). See
            :mod:`anomalib_promptmad.data.synthetic.foreground`.
        training_precision: ``"fp32"`` (default), ``"bf16"`` (bf16 autocast around the training forward pass) or
            ``"auto"`` (bf16 on CPUs with AMX/AVX512-BF16 and bf16-capable GPUs, fp32 elsewhere). See
            :mod:`anomalib_promptmad.infrastructure.precision`.
        pre_processor: Pre-processor (``True``: resize to ``image_size``; normalisation is inside the model).
        post_processor: Post-processor (``True``: :class:`OrderPreservingPostProcessor`).
        evaluator: Evaluator (``True``: image AUROC/AP/F1, pixel AUROC/AP/AUPRO/F1).
        visualizer: Visualizer.
    """

    def __init__(
        self,
        image_size: tuple[int, int] | int = (256, 256),
        categories: Sequence[str] | None = None,
        backbone: str = "tf_efficientnet_lite2",
        layers: Sequence[int] = (0, 1, 2, 3),
        backbone_weights: str = "auto",
        text_encoder: str = "auto",
        prompt_library: str | Sequence[str] | None = None,
        hidden_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        neighbour_size: tuple[int, int] | None = None,
        jitter_scale: float = 20.0,
        jitter_probability: float = 1.0,
        use_text_prompts: bool = True,
        use_segmentor: bool = True,
        diffusion_steps: int = 10,
        diffusion_beta_range: tuple[float, float] = (1e-3, 0.5),
        segmentor_dim: int = 128,
        fusion: str = "validation",
        segmentation_weight: float = 0.5,
        score_pool_size: int = 16,
        reconstruction_weight: float = 1.0,
        focal_weight: float = 1.0,
        dice_weight: float = 0.5,
        focal_alpha: float = 0.5,
        focal_gamma: float = 2.0,
        cutpaste_probability: float | None = None,
        texture_dir: str | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 1e-4,
        max_epochs: int | None = None,
        lr_decay_epoch: int | None = None,
        gradient_clip_val: float = 0.1,
        map_scale_quantile: float = 0.99,
        calibration_images: int = 32,
        use_prompt_matching: bool = False,
        matching_coreset_ratio: float = 0.1,
        prompt_candidates: int = 1,
        retrieved_prompts: int = 1,
        token_resampling: str = "area",
        standardize_tokens: bool = True,
        segmentor_reads_features: bool = False,
        feature_cache_mb: float = 2048,
        anomaly_families: dict[str, float] | None = None,
        change_threshold: float = DEFAULT_CHANGE_THRESHOLD,
        foreground_placement: bool = True,
        training_precision: str = "fp32",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        size = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        if max_epochs is not None and (max_epochs < 0 or (max_epochs == 0 and not use_prompt_matching)):
            msg = (
                "max_epochs must be >= 1 (0 only with use_prompt_matching=True, which needs no training), "
                f"got {max_epochs}"
            )
            raise ValueError(msg)
        self.image_size = size
        self.categories: list[str] | None = list(categories) if categories else None
        self.text_encoder = text_encoder
        self.prompt_library = [prompt_library] if isinstance(prompt_library, str) else prompt_library
        if self.prompt_library:
            # read the user's prompt files now: a missing or malformed file fails before any data or training work
            PromptLibrary.from_yaml(*self.prompt_library)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        # None: 80 % of the training length, known once the trainer is (see configure_optimizers)
        self.lr_decay_epoch = lr_decay_epoch
        self.gradient_clip_val = gradient_clip_val
        self.calibration = CalibrationSettings(  # validates the settings before any work
            calibration_images=calibration_images,
            map_scale_quantile=map_scale_quantile,
            matching_coreset_ratio=matching_coreset_ratio,
            prompt_candidates=prompt_candidates,
            fusion=fusion,  # type: ignore[arg-type]
            fixed_rule=FusionRule(segmentation_weight=segmentation_weight),
        )
        self.fusion_scores: dict[str, dict[str, float]] = {}

        self.model = PromptMADModel(
            image_size=size,
            backbone=backbone,
            layers=layers,
            backbone_weights=backbone_weights,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            neighbour_size=neighbour_size,
            jitter_scale=jitter_scale,
            jitter_probability=jitter_probability,
            use_text_prompts=use_text_prompts,
            use_segmentor=use_segmentor,
            diffusion_steps=diffusion_steps,
            diffusion_beta_range=diffusion_beta_range,
            segmentor_dim=segmentor_dim,
            score_pool_size=score_pool_size,
            use_prompt_matching=use_prompt_matching,
            retrieved_prompts=retrieved_prompts,
            token_resampling=token_resampling,
            standardize_tokens=standardize_tokens,
            segmentor_reads_features=segmentor_reads_features,
        )
        self.loss = PromptMADLoss(
            reconstruction_weight=reconstruction_weight,
            focal_weight=focal_weight,
            dice_weight=dice_weight,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
        )
        self.training_inputs = TrainingInputs(
            AnomalySynthesizer(
                cutpaste_probability=cutpaste_probability,
                texture_dir=texture_dir,
                families=anomaly_families,
                change_threshold=change_threshold,
            ),
            foreground_placement=foreground_placement,
            feature_cache_mb=feature_cache_mb,
        )
        resolve_training_precision(training_precision, "cpu")  # validates the setting before any work
        self.training_precision = training_precision
        self._training_dtype: torch.dtype | None = None
        self.hparams["backbone_weights_used"] = self.model.backbone.weights_source
        self._needs_calibration = False
        self._run_seed: int | None = None

    # ------------------------------------------------------------------ components
    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only: the model normalises with its backbone's own statistics, so it sees [0, 1] images.

        Args:
            image_size: Target size; default ``(256, 256)``.
        """
        return PreProcessor(transform=Resize(image_size or (256, 256), antialias=True))

    def configure_post_processor(self) -> PostProcessor:
        """Thresholds from validation data; order-preserving (sigmoid) normalisation around them."""
        return OrderPreservingPostProcessor()

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Image AUROC, AP, F1-max and F1; pixel AUROC, AP, AUPRO and F1."""
        test_metrics = [
            AUROC(fields=["pred_score", "gt_label"], prefix="image_"),
            AUPR(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Max(fields=["pred_score", "gt_label"], prefix="image_"),
            F1Score(fields=["pred_label", "gt_label"], prefix="image_"),
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            AUPR(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            F1Score(fields=["pred_mask", "gt_mask"], prefix="pixel_", strict=False),
        ]
        return Evaluator(test_metrics=test_metrics)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """OneNIP's gradient clipping, no sanity validation; the training length only where set on the model.

        anomalib lets these replace the user's trainer arguments, so ``max_epochs`` is returned only when it
        was given to the model: otherwise ``--trainer.max_epochs`` is honoured. Validation (which calibrates)
        runs after the last epoch only; where the length comes from the trainer, :meth:`setup` sets that.
        """
        arguments: dict[str, Any] = {"gradient_clip_val": self.gradient_clip_val, "num_sanity_val_steps": 0}
        if self.max_epochs is not None:
            arguments.update(max_epochs=self.max_epochs, check_val_every_n_epoch=max(1, self.max_epochs))
        return arguments

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
        """AdamW with a 10x step decay (OneNIP)."""
        parameters = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=self.learning_rate, weight_decay=self.weight_decay)
        decay_epoch = self.lr_decay_epoch
        if decay_epoch is None:
            epochs = self.max_epochs or (self.trainer.max_epochs if self._trainer is not None else None)
            decay_epoch = max(1, int(0.8 * epochs)) if epochs and epochs > 0 else 1000  # 1000: never, in effect
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=decay_epoch, gamma=0.1)
        return [optimizer], [scheduler]

    # ------------------------------------------------------------------ categories and text
    def setup(self, stage: str) -> None:
        """Resolve the categories and compute the class text embeddings (once, before training).

        Outside ``fit`` the category names may come from a checkpoint: the trainer restores a ``ckpt_path``
        only after ``setup`` (see :meth:`on_load_checkpoint`), so they are checked when the stage starts.
        """
        if self.categories is None:
            found = datamodule_categories(self._datamodule())
            if found:
                self.categories = found
            elif stage == "fit":
                raise ValueError(NO_CATEGORIES)
        if self.categories is not None:
            self.hparams["categories"] = list(self.categories)
        if self._trainer is not None:  # a truncated ckpt_path is then named in the error (test, predict too)
            use_readable_checkpoint_errors(self.trainer)
        if stage == "fit":
            if self._trainer is not None:  # setup("fit") may also be called by hand, without a trainer
                # refuse an unsupported precision and make checkpoints resumable before any long work starts
                check_precision(self.trainer.precision)
                self._validate_after_last_epoch()
                install_checkpoint_safety(self.trainer)
            self._run_seed = run_seed()
            self._check_datamodule_categories()
            if self.model.text_tokens is not None and not self.model.text_tokens.is_set:
                self._set_text_embeddings()

    def _validate_after_last_epoch(self) -> None:
        """Validate (and so calibrate) once, after the trainer's last epoch; refuse an open-ended run.

        Without ``max_epochs`` on the model, :attr:`trainer_arguments` leaves the length to the trainer and
        cannot set ``check_val_every_n_epoch`` from it, so it is set here, before the first epoch.
        """
        epochs = self.trainer.max_epochs
        if epochs == 0 and self.model.uses_prompt_matching:
            return  # nothing to train: calibration runs when testing or predicting starts
        if epochs is None or epochs < 1:
            msg = (
                f"PromptMAD needs a fixed number of epochs (the trainer has max_epochs={epochs}): it calibrates "
                "on the training images after the last one. Set --trainer.max_epochs N (Engine(max_epochs=N)) or "
                "--model.max_epochs N."
            )
            raise ValueError(msg)
        self.trainer.check_val_every_n_epoch = epochs

    def _datamodule(self) -> Any:
        """The trainer's datamodule, if any."""
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def _check_datamodule_categories(self) -> None:
        check_known_categories(self.categories, self._datamodule())

    def _set_text_embeddings(self) -> None:
        """Encode the categories' prompts: ``prompt_library``, else the dataset's own prompt file, over the packaged."""
        files = list(self.prompt_library or [])
        if not files:  # a dataset that ships its prompts needs no --model.prompt_library (an explicit one wins)
            found = dataset_prompt_file(getattr(self._datamodule(), "root", None))
            if found is not None:
                files = [str(found)]
                self.hparams["prompt_library"] = files  # the checkpoint says which prompts were used
        assert self.categories is not None  # noqa: S101 - resolved in setup
        embeddings, encoder = category_text_embeddings(self.categories, files, self.text_encoder)
        self.model.set_text_embeddings(embeddings)
        self.hparams["text_encoder"] = encoder

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        """Raw dataset images as the network sees them: resized by the pre-processor, on the model's device."""
        if isinstance(self.pre_processor, PreProcessor):
            images = self.pre_processor.transform(images)
        return images.to(self.device)

    def category_indices(self, image_paths: Sequence[str]) -> torch.Tensor:
        """Category index of each image from its path (MVTec layout ``<root>/<category>/<split>/...``)."""
        assert self.categories is not None  # noqa: S101 - resolved in setup
        return category_indices(image_paths, self.categories, self.device)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        """Calibration goes stale as soon as the weights move; seed the epoch so a resumed run repeats it."""
        self._needs_calibration = True
        if self._run_seed is not None:
            reseed_for_epoch(self._run_seed, self.current_epoch)

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Synthesise anomalies, reconstruct with a normal prompt, and compute the losses."""
        del args, kwargs
        images = batch.image
        category = self.category_indices(batch.image_path)
        # one generator per step: deterministic under the run's seed, and identical after a resume
        generator = torch.Generator(device=images.device).manual_seed(torch.initial_seed() % 2**31 + self.global_step)
        anomalous, masks = self.training_inputs.synthesize(images, category, generator)
        clean = self.training_inputs.clean_features(images, batch.image_path, self.model.backbone_features)
        with training_autocast(self._training_dtype, images.device.type):
            outputs = self.model.training_outputs(images, anomalous, masks, category, clean)
        # the losses in fp32: bf16 sums over 256 x 256 pixels would lose the small per-pixel terms
        outputs = outputs.float()
        terms = self.loss(outputs.reconstruction, outputs.target, outputs.pixel_logits, outputs.mask)
        # stop before the optimiser step: a NaN must never reach the weights or a checkpoint
        check_finite_losses(terms, step=self.global_step, epoch=self.current_epoch)
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), on_epoch=True, prog_bar=name == "loss", batch_size=len(images))
        return {"loss": terms["loss"]}

    def on_fit_start(self) -> None:
        """Fit the token statistics; estimate the objects and the precision; start an empty feature cache."""
        datamodule = self._datamodule()
        train_data = getattr(datamodule, "train_data", None)
        if train_data is not None:
            self.calibrator().fit_token_statistics(train_data)
        assert self.categories is not None  # noqa: S101 - resolved in setup
        augmented = getattr(datamodule, "train_augmentations", None) is not None
        self.training_inputs.start(train_data, self.categories, augmented)
        self._training_dtype = resolve_training_precision(self.training_precision, self.device.type)
        logger.info("PromptMAD training forward pass in %s", self._training_dtype or torch.float32)

    def on_fit_end(self) -> None:
        """Free the feature cache: it is only useful while training."""
        self.training_inputs.stop()

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict on validation images (for thresholds)."""
        del args, kwargs
        return self._predict_batch(batch, "val")

    def test_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict on test images and track how often the inferred category is right."""
        del args, kwargs
        return self._predict_batch(batch, "test")

    def _predict_batch(self, batch: Batch, stage: str) -> Batch:
        predictions, category = self.model.predict_with_category(batch.image)
        if self.categories and len(self.categories) > 1:
            correct = (category == self.category_indices(batch.image_path)).float()
            # sync_dist: under DDP each rank sees part of the data; report the mean over all ranks
            self.log(
                f"{stage}_category_accuracy",
                correct.mean(),
                on_step=False,
                on_epoch=True,
                batch_size=len(correct),
                sync_dist=True,
            )
        return batch.update(**predictions._asdict())

    # ------------------------------------------------------------------ calibration
    def on_validation_epoch_start(self) -> None:
        """Fix prompts, prototypes and map scales for the weights just trained."""
        if self._needs_calibration or not self.model.is_calibrated:
            self.calibrate()

    def on_validation_start(self) -> None:
        """Check the datamodule's categories (after a ``ckpt_path`` was restored)."""
        self._check_datamodule_categories()

    def on_test_start(self) -> None:
        """Check the datamodule's categories; calibrate a model that was trained but never validated."""
        self._check_datamodule_categories()
        self._ensure_calibrated()

    def on_predict_start(self) -> None:
        """Check the datamodule's categories; calibrate a model that was trained but never validated.

        The checkpoint of a run that did not finish is refused instead (with how to resume it): calibrating
        it here would need training images that a predict run does not have, and give a half-trained model.
        """
        self._check_datamodule_categories()
        if self.restored_from_checkpoint:
            self.require_calibrated("predict")
        self._ensure_calibrated()

    def _ensure_calibrated(self) -> None:
        if self._needs_calibration or not self.model.is_calibrated:
            self.calibrate()

    def calibrator(self) -> Calibrator:
        """The calibration stage for this model's network, categories and settings."""
        assert self.categories is not None  # noqa: S101 - resolved in setup or from the checkpoint
        return Calibrator(self.model, self.categories, self.calibration, self._network_input, self.category_indices)

    def calibrate(self, dataset: Any = None, validation: Any = None) -> None:  # noqa: ANN401 - anomalib datasets
        """Fit the inference buffers from normal training images, then choose the fusion rules.

        See :mod:`anomalib_promptmad.calibration` for what is measured and how.

        Args:
            dataset: Dataset of normal training images; default ``trainer.datamodule.train_data``.
            validation: Validation dataset (normals and defects with masks) for ``fusion="validation"``;
                default ``trainer.datamodule.val_data``.
        """
        dataset = dataset if dataset is not None else getattr(self._datamodule(), "train_data", None)
        if dataset is None:
            msg = (
                "PromptMAD must be calibrated on its normal training images after training; no training "
                "dataset is available. Run fit first (or pass `dataset=` to calibrate())."
            )
            raise RuntimeError(msg)
        validation = validation if validation is not None else getattr(self._datamodule(), "val_data", None)
        choices = self.calibrator().calibrate(dataset, validation)
        self.fusion_scores = {
            name: {str(candidate): score for candidate, score in choice.scores.items()}
            for name, choice in choices.items()
        }
        self._needs_calibration = False

    def validation_fusion_choices(self, validation: Any) -> dict[str, FusionChoice]:  # noqa: ANN401 - any dataset
        """Per category with anomalous validation pixels: its best rule and every candidate's score.

        Changes nothing (see :meth:`Calibrator.fusion_choices`).
        """
        return self.calibrator().fusion_choices(validation)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save with the category names (hyper-parameters) so the model reloads without a datamodule."""
        super().on_save_checkpoint(checkpoint)
        if self.categories is not None:
            checkpoint.setdefault("hyper_parameters", {})["categories"] = list(self.categories)
        trainer = self._trainer
        if trainer is not None and trainer.max_epochs is not None and self.current_epoch + 1 < trainer.max_epochs:
            # the training prompt bank is plain Python state: without it a resumed run would draw other prompts
            # than the interrupted one. Left out of the final checkpoint (inference never uses it; ~50 MB for
            # 15 categories at 256 px).
            bank = self.model._prompt_bank  # noqa: SLF001
            checkpoint[_PROMPT_BANK_KEY] = {label: torch.stack(kept) for label, kept in bank.items() if kept}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the category names from the checkpoint: they index its text embeddings, prompts and prototypes.

        A trainer restoring ``ckpt_path`` into a model built without ``categories`` has by then taken the
        datamodule's, which may be fewer or in another order.
        """
        migrate_checkpoint(checkpoint)
        super().on_load_checkpoint(checkpoint)
        if _PROMPT_BANK_KEY in checkpoint:
            self.model._prompt_bank = {  # noqa: SLF001 - restored for an exact resume (see on_save_checkpoint)
                int(label): [feature.to(self.device) for feature in features]
                for label, features in checkpoint[_PROMPT_BANK_KEY].items()
            }
        categories = checkpoint.get("hyper_parameters", {}).get("categories")
        if categories:
            self.categories = list(categories)
            self.hparams["categories"] = list(categories)

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """Per-category test metrics, then anomalib's callbacks.

        The metrics callback comes first so that it sees the model's raw scores before the
        post-processor normalises them in place.
        """
        callbacks = super().configure_callbacks()
        callbacks = list(callbacks) if isinstance(callbacks, Sequence) else [callbacks]
        return [PerCategoryMetrics(), *callbacks]


# Short name for the stock CLI and get_model(), also when anomalib was imported by our own code.
publish(PromptMAD, "anomalib.models")
