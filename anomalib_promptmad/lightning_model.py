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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import AUPR, AUPRO, AUROC, Evaluator, F1Max, F1Score
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch.utils.data import DataLoader, Subset
from torchvision.transforms.v2 import Resize
from tqdm import tqdm

from anomalib_promptmad.backbone.feature_cache import BackboneFeatures, FeatureCache
from anomalib_promptmad.callbacks.per_category_metrics import PerCategoryMetrics
from anomalib_promptmad.data.category import category_from_path
from anomalib_promptmad.data.synthetic import (
    DEFAULT_CHANGE_THRESHOLD,
    AnomalySynthesizer,
    category_foregrounds,
    foreground_batch,
)
from anomalib_promptmad.deploy.mixin import DeploymentMixin
from anomalib_promptmad.fusion_rule import FusionRule, candidate_rules, choose_fusion_rule
from anomalib_promptmad.losses import PromptMADLoss
from anomalib_promptmad.matching import greedy_coreset_indices
from anomalib_promptmad.post_processor import OrderPreservingPostProcessor
from anomalib_promptmad.precision import resolve_training_precision, training_autocast
from anomalib_promptmad.prompts import PromptLibrary, build_text_encoder, class_text_embeddings
from anomalib_promptmad.registration import publish
from anomalib_promptmad.reliability import (
    check_finite_losses,
    check_precision,
    install_checkpoint_safety,
    reseed_for_epoch,
    run_seed,
    use_readable_checkpoint_errors,
)
from anomalib_promptmad.torch_model import PromptMADModel

__all__ = ["PromptMAD"]

logger = logging.getLogger(__name__)

# Checkpoint key of the training prompt bank (category index -> stacked recent normal features).
_PROMPT_BANK_KEY = "promptmad_prompt_bank"

# fusion= values: how each category's fusion rule is set at calibration
_FUSION_MODES = ("validation", "sum", "product")

# Side of the grid on which validation maps are compared: AP barely moves with resolution, memory does.
_FUSION_SELECTION_SIZE = 128

_NO_CATEGORIES = (
    "PromptMAD needs category names: pass `categories=[...]` to PromptMAD, load a trained checkpoint, or use a "
    "datamodule that has `categories` (MultiClassMVTecAD, MultiClassFolder) or `category` (MVTecAD, Folder)."
)


def _datamodule_categories(datamodule: Any) -> list[str] | None:
    """Category names of a multi-class (``categories``) or single-class (``category``) datamodule."""
    found = getattr(datamodule, "categories", None) or (
        [datamodule.category] if getattr(datamodule, "category", None) else None
    )
    return list(found) if found else None


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
            ``"validation"`` (default) picks, per category, the rule with the best pixel AP on the validation
            split (held-out normals plus synthetic defects) among the sums ``(1 - w) * D + w * P``,
            ``w = 0, 0.1, ..., 1``, and the product ``D * P``; ``"sum"`` uses ``segmentation_weight``;
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
            :mod:`anomalib_promptmad.precision`.
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
        if not 0 < matching_coreset_ratio <= 1:
            msg = f"matching_coreset_ratio must be in (0, 1], got {matching_coreset_ratio}"
            raise ValueError(msg)
        if prompt_candidates < 1:
            msg = f"prompt_candidates must be >= 1, got {prompt_candidates}"
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
        self.map_scale_quantile = map_scale_quantile
        self.calibration_images = calibration_images
        self.matching_coreset_ratio = matching_coreset_ratio
        self.prompt_candidates = prompt_candidates
        if feature_cache_mb < 0:
            msg = f"feature_cache_mb must be >= 0 (0 switches the cache off), got {feature_cache_mb}"
            raise ValueError(msg)
        self.feature_cache_mb = feature_cache_mb
        self.feature_cache: FeatureCache | None = None
        if fusion not in _FUSION_MODES:
            msg = f"fusion must be one of {list(_FUSION_MODES)}, got {fusion!r}"
            raise ValueError(msg)
        self.fusion = fusion
        self.fixed_fusion_rule = FusionRule(weight=segmentation_weight)  # validates the weight
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
        self.synthesizer = AnomalySynthesizer(
            cutpaste_probability=cutpaste_probability,
            texture_dir=texture_dir,
            families=anomaly_families,
            change_threshold=change_threshold,
        )
        self.foreground_placement = foreground_placement
        self._foregrounds: list[torch.Tensor | None] | None = None  # per category index, set at fit start
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
            found = _datamodule_categories(self._datamodule())
            if found:
                self.categories = found
            elif stage == "fit":
                raise ValueError(_NO_CATEGORIES)
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
        """The model must know its categories, and every category of the datamodule."""
        if self.categories is None:
            raise ValueError(_NO_CATEGORIES)
        unknown = sorted(set(_datamodule_categories(self._datamodule()) or ()) - set(self.categories))
        if unknown:
            msg = (
                f"the datamodule has categories {unknown} that this PromptMAD model was not trained on "
                f"(it knows {self.categories}): select known categories with the datamodule's `categories`, "
                "or train a model that includes them."
            )
            raise ValueError(msg)

    def _dataset_prompt_files(self) -> list[str]:
        """``<datamodule root>/prompts.yaml`` where it exists (the file ``promptmad-demo-data`` writes), else ``[]``.

        Read only when no ``prompt_library`` was given: a dataset that ships its own prompts then needs no
        ``--model.prompt_library`` (an explicit one always wins).
        """
        root = getattr(self._datamodule(), "root", None)
        # absolute: the path is recorded in the checkpoint, which may be read from another directory
        candidate = Path(root).absolute() / "prompts.yaml" if isinstance(root, str | Path) else None
        if candidate is None or not candidate.is_file():
            return []
        logger.info("PromptMAD: reading the dataset's prompts from %s (no prompt_library given)", candidate)
        self.hparams["prompt_library"] = [str(candidate)]  # the checkpoint says which prompts were used
        return [str(candidate)]

    def _set_text_embeddings(self) -> None:
        library = PromptLibrary.default()
        for path in self.prompt_library or self._dataset_prompt_files():
            library = library.with_yaml(path)
        encoder = build_text_encoder(self.text_encoder)
        assert self.categories is not None  # noqa: S101 - resolved in setup
        embeddings = torch.stack([
            class_text_embeddings(library.prompts_for(category), encoder) for category in self.categories
        ])
        self.model.set_text_embeddings(embeddings)
        self.hparams["text_encoder"] = encoder.name
        logger.info("PromptMAD text prompts encoded with %s for %s", encoder.name, self.categories)

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        """Raw dataset images as the network sees them: resized by the pre-processor, on the model's device."""
        if isinstance(self.pre_processor, PreProcessor):
            images = self.pre_processor.transform(images)
        return images.to(self.device)

    def category_indices(self, image_paths: Sequence[str]) -> torch.Tensor:
        """Category index of each image from its path (MVTec layout ``<root>/<category>/<split>/...``)."""
        assert self.categories is not None  # noqa: S101 - resolved in setup
        if len(self.categories) == 1:
            return torch.zeros(len(image_paths), dtype=torch.long, device=self.device)
        index = {name: position for position, name in enumerate(self.categories)}
        names = [category_from_path(path) for path in image_paths]
        missing = sorted({name for name in names if name not in index})
        if missing:
            msg = f"images of categories {missing} are not among this model's categories {self.categories}"
            raise ValueError(msg)
        return torch.tensor([index[name] for name in names], dtype=torch.long, device=self.device)

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
        # anomaly synthesis is data preparation: full precision also under mixed-precision autocast
        with torch.autocast(device_type=images.device.type, enabled=False):
            foreground = self._foreground(category, images)
            anomalous, masks = self.synthesizer(images.float(), generator, foreground, categories=category)
        with training_autocast(self._training_dtype, images.device.type):
            outputs = self.model.training_outputs(images, anomalous, masks, category, self._clean_features(batch))
        # the losses in fp32: bf16 sums over 256 x 256 pixels would lose the small per-pixel terms
        outputs = {key: value.float() for key, value in outputs.items()}  # type: ignore[assignment]
        pixel_logits = [outputs[key] for key in ("logits_coarse", "logits_refined") if key in outputs]
        terms = self.loss(outputs["reconstruction"], outputs["target"], pixel_logits, outputs["mask"])
        # stop before the optimiser step: a NaN must never reach the weights or a checkpoint
        check_finite_losses(terms, step=self.global_step, epoch=self.current_epoch)
        for name, value in terms.items():
            self.log(f"train_{name}", value.detach(), on_epoch=True, prog_bar=name == "loss", batch_size=len(images))
        return {"loss": terms["loss"]}

    def _foreground(self, category: torch.Tensor, images: torch.Tensor) -> torch.Tensor | None:
        """``(B, 1, H, W)`` object masks of the batch's categories for the synthesizer, or ``None``."""
        if not self._foregrounds:
            return None
        estimates = [self._foregrounds[index] for index in category.tolist()]
        return foreground_batch(estimates, *images.shape[-2:], device=images.device)

    def _estimate_foregrounds(self) -> None:
        """Per category, the object mask of its training images (``None``: texture or no estimate)."""
        self._foregrounds = None
        dataset = getattr(self._datamodule(), "train_data", None)
        samples = getattr(dataset, "samples", None)
        if not self.foreground_placement or samples is None or self.categories is None:
            return
        if len(self.categories) == 1:
            category_of = lambda _path: self.categories[0]  # noqa: E731 - any layout for one category
        else:
            category_of = category_from_path
        found = category_foregrounds(list(samples.image_path), category_of)
        self._foregrounds = [found.get(name) for name in self.categories]

    def on_fit_start(self) -> None:
        """Fit the token statistics; estimate the object masks and the precision; start an empty feature cache."""
        self._fit_token_statistics()
        self._estimate_foregrounds()
        self._training_dtype = resolve_training_precision(self.training_precision, self.device.type)
        logger.info("PromptMAD training forward pass in %s", self._training_dtype or torch.float32)
        self.feature_cache = None
        if not self.feature_cache_mb:
            return
        datamodule = self._datamodule()
        if getattr(datamodule, "train_augmentations", None) is not None:
            logger.info("Training augmentations are set: the backbone features of training images are not cached.")
            return
        self.feature_cache = FeatureCache(self.feature_cache_mb)

    @torch.no_grad()
    def _fit_token_statistics(self, dataset: Any = None) -> None:  # noqa: ANN401 - any anomalib dataset
        """Standardisation statistics of the tokens, from up to ``calibration_images`` training images per category.

        Fitted once, before the first step: everything trained depends on them, so a resumed run keeps the ones
        its checkpoint holds.

        Args:
            dataset: Normal training images; default ``trainer.datamodule.train_data``.
        """
        tokenizer = self.model.tokenizer
        if dataset is None:
            dataset = getattr(self._datamodule(), "train_data", None)
        if tokenizer.has_statistics or dataset is None:
            return
        taken: dict[int, int] = {}
        chosen = []
        for position, label in enumerate(self.category_indices(list(dataset.samples.image_path)).tolist()):
            if taken.get(label, 0) < self.calibration_images:
                taken[label] = taken.get(label, 0) + 1
                chosen.append(position)
        loader = DataLoader(Subset(dataset, chosen), batch_size=16, shuffle=False, collate_fn=dataset.collate_fn)
        tokens = [
            self.model.unstandardized_tokens(self._network_input(batch.image))
            for batch in tqdm(loader, desc="PromptMAD token statistics", leave=False, disable=None)
        ]
        tokenizer.fit_statistics(torch.cat(tokens))
        logger.info("PromptMAD: token standardisation fitted on %d training images", len(chosen))

    def on_fit_end(self) -> None:
        """Free the cache: it is only useful while training."""
        self.feature_cache = None

    def _clean_features(self, batch: Batch) -> BackboneFeatures | None:
        """Backbone features of the batch's clean images, from the cache or computed (and cached) now."""
        if self.feature_cache is None or batch.image_path is None:
            return None
        cached = self.feature_cache.get(batch.image_path)
        if cached is None:
            cached = self.model.backbone_features(batch.image)
            self.feature_cache.put(batch.image_path, cached)
        return cached

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

    @torch.no_grad()
    def calibrate(self, dataset: Any = None, validation: Any = None) -> None:  # noqa: ANN401 - anomalib datasets
        """Fit the inference buffers from normal training images, then choose the fusion rules.

        1. Category prototypes: mean global descriptor of each category's training images.
        2. Normal image prompts: per category, the training image closest to its prototype (a medoid, so
           the prompt is a real normal image and the choice is deterministic), then up to
           ``prompt_candidates - 1`` more, each the image farthest (by descriptor) from those already taken.
        3. Map scale: per category, the mean ``map_scale_quantile`` of the distance maps of up to
           ``calibration_images`` other training images.
        4. Prompt matching (``use_prompt_matching``): per category, the greedy coreset of the training
           images' patch embeddings, and the scale of ``M`` on normal images outside the bank (the
           validation split's normal images, else training images).
        5. Fusion rule: per category, as set by ``fusion`` (by default the best on the validation split).

        Args:
            dataset: Dataset of normal training images; default ``trainer.datamodule.train_data``.
            validation: Validation dataset (normals and defects with masks) for ``fusion="validation"``;
                default ``trainer.datamodule.val_data``.
        """
        if dataset is None:
            dataset = getattr(self._datamodule(), "train_data", None)
        if dataset is None:
            msg = (
                "PromptMAD must be calibrated on its normal training images after training; no training "
                "dataset is available. Run fit first (or pass `dataset=` to calibrate())."
            )
            raise RuntimeError(msg)
        assert self.categories is not None  # noqa: S101 - resolved in setup
        was_training = self.model.training
        self.model.eval()
        self._fit_token_statistics(dataset)  # set before training; missing only where calibrate() is called by hand
        loader = DataLoader(dataset, batch_size=16, shuffle=False, collate_fn=dataset.collate_fn)
        descriptors, labels, images_by_category = [], [], {}
        patches: dict[int, list[torch.Tensor]] = {}
        for batch in tqdm(loader, desc="PromptMAD calibration (prototypes)", leave=False, disable=None):
            images = self._network_input(batch.image)
            category = self.category_indices(batch.image_path)
            levels, features = self.model.extract(images)
            descriptors.append(self.model.descriptor(features))
            labels.append(category)
            if self.model.uses_prompt_matching:
                embedding = self.model.matching_embedding(levels).permute(0, 2, 3, 1).flatten(1, 2).cpu()
                for rows, label in zip(embedding, category.tolist(), strict=True):
                    patches.setdefault(label, []).append(rows)
            for image, label in zip(images, category.tolist(), strict=True):
                kept = images_by_category.setdefault(label, [])
                if len(kept) <= self.calibration_images:
                    kept.append(image)
        descriptor = torch.cat(descriptors)
        label = torch.cat(labels)
        missing = [name for position, name in enumerate(self.categories) if not (label == position).any()]
        if missing:
            msg = f"no normal training images found for categories {missing}; cannot calibrate PromptMAD"
            raise RuntimeError(msg)
        prototypes = torch.stack([descriptor[label == k].mean(0) for k in range(len(self.categories))])
        self.model.set_prototypes(prototypes)
        self._set_prompt_candidates(dataset, descriptor, label)
        scales = []
        for k in range(len(self.categories)):
            images = torch.stack(images_by_category[k][: self.calibration_images])
            scales.append(self.model.distance_quantile(images, self.map_scale_quantile).mean())
        self.model.set_map_scale(torch.stack(scales))
        if self.model.uses_prompt_matching:
            self._set_matching_banks(patches, images_by_category, validation)
        self.model.set_fusion_rules(self._choose_fusion_rules(validation))
        self.model.train(was_training)
        self._needs_calibration = False

    def _set_prompt_candidates(self, dataset: Any, descriptor: torch.Tensor, label: torch.Tensor) -> None:  # noqa: ANN401
        """Per category: the medoid, then farthest-first by descriptor, up to ``prompt_candidates`` images."""
        assert self.categories is not None  # noqa: S101 - resolved in setup
        chosen_by_category = []
        for k in range(len(self.categories)):
            members = torch.nonzero(label == k).flatten()
            similarity = descriptor[members] @ descriptor[members].T
            chosen = [int((descriptor[members] @ self.model.prototypes[k]).argmax())]
            while len(chosen) < min(self.prompt_candidates, len(members)):
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
            items = torch.stack([dataset[index].image for index in padded])
            images.append(self._network_input(items))
        self.model.set_prompt_images(torch.stack(images).to(self.device), valid)

    def _set_matching_banks(
        self,
        patches: dict[int, list[torch.Tensor]],
        images_by_category: dict[int, list[torch.Tensor]],
        validation: Any,  # noqa: ANN401 - any anomalib dataset
    ) -> None:
        """Coreset each category's normal patches into its bank, then scale ``M`` on normals outside the bank."""
        assert self.categories is not None  # noqa: S101 - resolved in setup
        banks = []
        for k, name in enumerate(self.categories):
            embedding = torch.cat(patches[k])
            if self.matching_coreset_ratio < 1:
                logger.info("PromptMAD: prompt-matching coreset of '%s' (%d patches)", name, len(embedding))
                embedding = embedding[greedy_coreset_indices(embedding, self.matching_coreset_ratio)]
            banks.append(embedding)
        self.model.set_matching_banks(banks)
        sizes = self.model.patch_bank.memory_bytes if self.model.patch_bank is not None else []
        logger.info(
            "PromptMAD prompt-matching banks: %s",
            ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in zip(self.categories, sizes, strict=True)),
        )
        held_out = self._validation_normals(validation)
        scales = []
        for k, name in enumerate(self.categories):
            images = held_out.get(k)
            if images is None:
                logger.info("PromptMAD: no held-out normal image of '%s'; M is scaled on training images.", name)
                images = torch.stack(images_by_category[k][: self.calibration_images])
            scales.append(self.model.matching_quantile(images, self.map_scale_quantile).mean())
        self.model.set_matching_scale(torch.stack(scales))

    def _validation_normals(self, validation: Any) -> dict[int, torch.Tensor]:  # noqa: ANN401 - any anomalib dataset
        """Up to ``calibration_images`` normal validation images per category, as network input."""
        if validation is None:
            validation = getattr(self._datamodule(), "val_data", None)
        if validation is None or len(validation) == 0:
            return {}
        loader = DataLoader(validation, batch_size=16, shuffle=False, collate_fn=validation.collate_fn)
        kept: dict[int, list[torch.Tensor]] = {}
        for batch in loader:
            normal = batch.gt_label == 0
            if not bool(normal.any()):
                continue
            paths = [path for path, keep in zip(batch.image_path, normal.tolist(), strict=True) if keep]
            images = self._network_input(batch.image[normal])
            for image, label in zip(images, self.category_indices(paths).tolist(), strict=True):
                if len(kept.setdefault(label, [])) < self.calibration_images:
                    kept[label].append(image)
        return {label: torch.stack(images) for label, images in kept.items()}

    def _choose_fusion_rules(self, validation: Any) -> list[FusionRule]:  # noqa: ANN401 - any anomalib dataset
        """One fusion rule per category, as ``fusion`` says (the model is calibrated up to the rules)."""
        assert self.categories is not None  # noqa: S101 - resolved in setup
        count = len(self.categories)
        if self.fusion == "sum":
            return [self.fixed_fusion_rule] * count
        if self.fusion == "product":
            return [FusionRule(product=True)] * count
        if validation is None:
            validation = getattr(self._datamodule(), "val_data", None)
        if validation is None or len(validation) == 0:
            logger.warning(
                "PromptMAD: fusion='validation' but there is no validation split; every category uses %s. Use a "
                "datamodule with val_split_mode='synthetic' (MultiClassMVTecAD's default) or set fusion='sum'.",
                self.fixed_fusion_rule,
            )
            return [self.fixed_fusion_rule] * count
        # component_maps needs a calibrated model: any rule will do until the chosen ones are set
        self.model.set_fusion_rules([self.fixed_fusion_rule] * count)
        choices = self.validation_fusion_choices(validation)
        self.fusion_scores = {
            name: {str(candidate): score for candidate, score in scores.items()}
            for name, (_, scores) in choices.items()
        }
        rules = []
        for name in self.categories:
            if name not in choices:
                logger.warning(
                    "PromptMAD: the validation split has no anomalous pixel of '%s'; it uses the fixed rule %s.",
                    name,
                    self.fixed_fusion_rule,
                )
                rules.append(self.fixed_fusion_rule)
                continue
            rule, scores = choices[name]
            logger.info(
                "PromptMAD fusion for '%s': %s (validation, worst defect family's mean of pixel AP and AUROC %.3f; "
                "fixed %s: %.3f)",
                name,
                rule,
                scores[rule],
                self.fixed_fusion_rule,
                scores.get(self.fixed_fusion_rule, float("nan")),
            )
            rules.append(rule)
        return rules

    @torch.no_grad()
    def validation_fusion_choices(
        self,
        validation: Any,  # noqa: ANN401 - any anomalib dataset
    ) -> dict[str, tuple[FusionRule, dict[FusionRule, float]]]:
        """Per category with anomalous validation pixels: its best rule and every candidate's pixel AP.

        Reads the validation images through the calibrated network; changes nothing.
        """
        assert self.categories is not None  # noqa: S101 - resolved in setup or from the checkpoint
        was_training = self.model.training
        self.model.eval()  # in train mode the heads' batch-norm statistics would move
        try:
            maps = self._validation_maps(validation)
        finally:
            self.model.train(was_training)
        candidates = candidate_rules(with_matching=self.model.uses_prompt_matching)
        return {
            self.categories[index]: choose_fusion_rule(distance, probability, mask, candidates, matching, families)
            for index, (distance, probability, matching, mask, families) in sorted(maps.items())
            if bool(mask.any())
        }

    def _validation_maps(
        self,
        validation: Any,  # noqa: ANN401 - any anomalib dataset
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, list[str]]]:
        """Per true category: the validation images' ``(D, P, M, mask, families)``, maps ``(N, 1, h, w)``, ``h, w <= 128``.

        ``M`` is ``None`` without prompt matching. The family of a defect is the one the synthetic validation set
        assigned it (``anomaly_family``), else the image's folder (MVTec's defect type for real defects).
        """
        family_of = getattr(validation, "anomaly_family", lambda path: Path(path).parent.name)
        loader = DataLoader(validation, batch_size=16, shuffle=False, collate_fn=validation.collate_fn)
        size = (min(self.image_size[0], _FUSION_SELECTION_SIZE), min(self.image_size[1], _FUSION_SELECTION_SIZE))
        collected: dict[int, list[tuple[torch.Tensor, ...]]] = {}
        for batch in tqdm(loader, desc="PromptMAD calibration (fusion)", leave=False, disable=None):
            images = self._network_input(batch.image)
            maps = self.model.component_maps(images)
            if batch.gt_mask is None:  # a batch of normal images only
                mask = torch.zeros(images.shape[0], 1, *size, dtype=torch.bool)
            else:
                masks = batch.gt_mask.float().reshape(images.shape[0], 1, *batch.gt_mask.shape[-2:])
                mask = F.interpolate(masks, size=size) > 0.5
            components = [maps.distance, maps.probability] + ([maps.matching] if maps.matching is not None else [])
            pooled = [F.adaptive_avg_pool2d(component, size).cpu() for component in components]
            for item, label in enumerate(self.category_indices(batch.image_path).tolist()):
                parts = tuple(part[item : item + 1] for part in [*pooled, mask])
                family = family_of(batch.image_path[item]) if bool(mask[item].any()) else "normal"
                collected.setdefault(label, []).append((parts, family))
        result = {}
        for label, items in collected.items():
            parts = [torch.cat(column) for column in zip(*(item for item, _ in items), strict=True)]
            matching = parts[2] if len(parts) == 4 else None
            result[label] = (parts[0], parts[1], matching, parts[-1], [family for _, family in items])
        return result

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
            checkpoint[_PROMPT_BANK_KEY] = {label: torch.stack(features) for label, features in bank.items() if features}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the category names from the checkpoint: they index its text embeddings, prompts and prototypes.

        A trainer restoring ``ckpt_path`` into a model built without ``categories`` has by then taken the
        datamodule's, which may be fewer or in another order.
        """
        state = checkpoint.get("state_dict") or {}
        if "model.map_scale" in state and "model.fusion_weight" not in state:
            # saved before per-category fusion rules existed: those models fused with the fixed weighted sum
            count = state["model.map_scale"].numel()
            weight = float(checkpoint.get("hyper_parameters", {}).get("segmentation_weight", 0.5))
            state["model.fusion_weight"] = torch.full((count,), weight)
            state["model.fusion_product"] = torch.zeros(count)
        if "model.fusion_weight" in state and "model.fusion_matching" not in state:
            state["model.fusion_matching"] = torch.zeros_like(state["model.fusion_weight"])
        prompts = state.get("model.prompt_features")
        if prompts is not None and prompts.ndim == 4:
            # saved before prompt retrieval: one fixed prompt per category, i.e. a single candidate each
            state["model.prompt_features"] = prompts.unsqueeze(1)
            state["model.prompt_memory"] = state["model.prompt_memory"].unsqueeze(1)
            state["model.prompt_descriptors"] = PromptMADModel.descriptor(prompts).unsqueeze(1)
            state["model.prompt_valid"] = torch.ones(prompts.shape[0], 1)
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
