# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""PromptMAD torch network: backbone -> prompts -> reconstruction -> segmentor -> anomaly map.

Inference takes an image batch only. The category of each image is inferred inside ``forward`` (nearest
class prototype of pooled backbone features); its normal image prompt (the nearest of the category's
candidate prompts, encoded once after training), text tokens, map scales, prompt-matching bank and fusion
rule are then gathered from buffers, so the exported graph needs no label, no text encoder and no random
choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812
from anomalib.data import InferenceBatch
from anomalib.models.components.base.dynamic_buffer import DynamicBufferMixin

from anomalib_promptmad.anomaly_map import AnomalyMapGenerator
from anomalib_promptmad.backbone import MultiScaleFeatureExtractor
from anomalib_promptmad.backbone.feature_cache import BackboneFeatures
from anomalib_promptmad.fusion_rule import FusionRule
from anomalib_promptmad.matching import PatchBank, PatchEmbedding
from anomalib_promptmad.prompts.text_tokens import TextTokens
from anomalib_promptmad.reconstruction import FeatureTokenizer, PromptReconstructor
from anomalib_promptmad.segmentor import DiffusionRefinement, ResidualRefiner, TextGuidedSegmentor

__all__ = ["ComponentMaps", "PromptMADModel", "TrainingOutput"]

TOKEN_STRIDE = 16

class TrainingOutput(NamedTuple):
    """Everything the loss needs for one training batch (normal images first, then their anomalous copies).

    Attributes:
        reconstruction: ``(2B, C, h, w)`` reconstructed tokens.
        target: ``(2B, C, h, w)`` the clean images' tokens (the reconstruction target of both halves).
        mask: ``(2B, 1, H, W)`` anomaly masks (zeros for the normal half).
        coarse_logits: ``(2B, 1, H/4, W/4)`` the pixel head's logits.
        refined_logits: ``(2B, 1, H/4, W/4)`` the diffusion refinement's logits, ``None`` without diffusion.
    """

    reconstruction: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    coarse_logits: torch.Tensor
    refined_logits: torch.Tensor | None = None

    @property
    def pixel_logits(self) -> list[torch.Tensor]:
        """The pixel logits the segmentation losses apply to: coarse, then refined where present."""
        return [logits for logits in (self.coarse_logits, self.refined_logits) if logits is not None]

    def float(self) -> TrainingOutput:
        """Every tensor in fp32 (the losses' precision)."""
        return TrainingOutput(*(None if value is None else value.float() for value in self))


class ComponentMaps(NamedTuple):
    """The maps a fusion rule combines, at the image size, and the category each image was given.

    Attributes:
        distance: ``(B, 1, H, W)`` scaled reconstruction distance ``D``.
        probability: ``(B, 1, H, W)`` pixel-head probability ``P``.
        matching: ``(B, 1, H, W)`` scaled prompt-matching distance ``M``; ``None`` without prompt matching.
        category: ``(B,)`` inferred category indices.
    """

    distance: torch.Tensor
    probability: torch.Tensor
    matching: torch.Tensor | None
    category: torch.Tensor


class PromptMADModel(DynamicBufferMixin):
    """PromptMAD network.

    Args:
        image_size: Training image size ``(H, W)``; multiples of 16.
        backbone: timm backbone name (frozen).
        layers: Backbone levels to use (OneNIP: strides 2, 4, 8, 16).
        backbone_weights: ``"auto"``, ``"packaged"``, ``"timm"``, ``"none"`` or a local weights path.
        hidden_dim: Transformer width.
        num_heads: Attention heads.
        num_encoder_layers: Encoder depth.
        num_decoder_layers: Two-way decoder depth.
        dim_feedforward: FFN width.
        dropout: Dropout probability.
        neighbour_size: Blocked attention window; ``None`` = OneNIP's ``grid // 2``.
        jitter_scale: Feature-jitter scale (training); 0 disables it.
        jitter_probability: Chance of jitter per step.
        use_text_prompts: Fuse class text tokens into the prompt stream, decoder, segmentor and diffusion.
        use_segmentor: PromptMAD's text-guided segmentor; ``False`` uses OneNIP's refiner.
        diffusion_steps: Diffusion refinement steps; 0 disables the refinement.
        diffusion_beta_range: ``(beta_start, beta_end)`` of the linear schedule.
        segmentor_dim: Segmentor width at stride 16.
        score_pool_size: Average-pool window of the image score.
        prompt_bank_size: Recent normal images kept per category to draw training prompts from.
        use_prompt_matching: Add the prompt-matching map ``M`` (nearest normal patch of the category's coreset).
        matching_strides: Backbone strides whose levels make the matching embedding (Patchcore's 8 and 16).
        retrieved_prompts: Candidate prompts used per test image (the nearest by global descriptor); with
            more than one, each token keeps the reconstruction of the prompt that explains it best.
        token_resampling: How backbone levels reach the token grid: ``"area"`` (finer levels area-averaged) or
            ``"bilinear"`` (OneNIP's ``align_corners=True`` resize). See :class:`FeatureTokenizer`.
        standardize_tokens: Standardise every token channel with normal training statistics (fitted before
            training), so that the distance map weighs each channel by its normal variation.
        segmentor_reads_features: Feed the segmentor the query features beside the residual (the first design);
            ``False`` makes the residual its only stride-16 evidence.
    """

    def __init__(
        self,
        image_size: tuple[int, int] = (256, 256),
        backbone: str = "tf_efficientnet_lite2",
        layers: Sequence[int] = (0, 1, 2, 3),
        backbone_weights: str = "auto",
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
        score_pool_size: int = 16,
        prompt_bank_size: int = 16,
        use_prompt_matching: bool = False,
        matching_strides: Sequence[int] = (8, 16),
        retrieved_prompts: int = 1,
        token_resampling: str = "area",
        standardize_tokens: bool = True,
        segmentor_reads_features: bool = False,
    ) -> None:
        super().__init__()
        image_size = (int(image_size[0]), int(image_size[1]))
        if image_size[0] % TOKEN_STRIDE or image_size[1] % TOKEN_STRIDE:
            msg = f"image_size must be a multiple of {TOKEN_STRIDE} in both sides, got {image_size}"
            raise ValueError(msg)
        if diffusion_steps and not use_segmentor:
            msg = "diffusion refinement refines the segmentor's logits: set use_segmentor=True or diffusion_steps=0"
            raise ValueError(msg)
        if retrieved_prompts < 1:
            msg = f"retrieved_prompts must be >= 1, got {retrieved_prompts}"
            raise ValueError(msg)
        self.image_size = image_size
        self.grid_size = (image_size[0] // TOKEN_STRIDE, image_size[1] // TOKEN_STRIDE)
        self.prompt_bank_size = prompt_bank_size
        self.retrieved_prompts = retrieved_prompts

        self.backbone = MultiScaleFeatureExtractor(backbone, layers=layers, weights=backbone_weights)
        self.register_buffer("pixel_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.tokenizer = FeatureTokenizer(
            self.backbone.out_channels,
            self.backbone.strides,
            TOKEN_STRIDE,
            resampling=token_resampling,
            standardize=standardize_tokens,
        )
        feature_channels = self.tokenizer.out_channels

        self.text_tokens = TextTokens(hidden_dim) if use_text_prompts else None
        text_dim = hidden_dim if use_text_prompts else None
        self.reconstructor = PromptReconstructor(
            feature_channels,
            self.grid_size,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            neighbour_size=neighbour_size,
            jitter_scale=jitter_scale,
            jitter_probability=jitter_probability,
            use_text=use_text_prompts,
        )
        self.refiner: ResidualRefiner | None = None
        self.segmentor: TextGuidedSegmentor | None = None
        self.diffusion: DiffusionRefinement | None = None
        self._skip_levels: list[int] = []
        if use_segmentor:
            self._skip_levels = [self._level_closest_to(stride) for stride in (8, 4)]
            self.segmentor = TextGuidedSegmentor(
                feature_channels,
                [self.backbone.out_channels[index] for index in self._skip_levels],
                text_dim,
                dim=segmentor_dim,
                read_features=segmentor_reads_features,
            )
            if diffusion_steps:
                self.diffusion = DiffusionRefinement(
                    self.segmentor.out_channels,
                    steps=diffusion_steps,
                    beta_start=diffusion_beta_range[0],
                    beta_end=diffusion_beta_range[1],
                    text_dim=text_dim,
                )
        else:
            self.refiner = ResidualRefiner(feature_channels)
        self.anomaly_map = AnomalyMapGenerator(score_pool_size)
        self.patch_embedding: PatchEmbedding | None = None
        self.patch_bank: PatchBank | None = None
        if use_prompt_matching:
            self.patch_embedding = PatchEmbedding(
                [self._level_closest_to(stride) for stride in sorted(matching_strides)],
                self.backbone.out_channels,
                self.backbone.strides,
            )
            self.patch_bank = PatchBank()

        # Fitted after training from normal training images (see PromptMAD's calibration); resized on load.
        self.register_buffer("prototypes", torch.empty(0))  # (K, C) L2-normalised mean descriptors
        self.register_buffer("prompt_features", torch.empty(0))  # (K, M, C, h, w) candidate normal prompts
        self.register_buffer("prompt_memory", torch.empty(0))  # (K, M, N, D) their encoded prompt streams
        self.register_buffer("prompt_descriptors", torch.empty(0))  # (K, M, C) their global descriptors
        self.register_buffer("prompt_valid", torch.empty(0))  # (K, M) 1 for a real candidate, 0 for padding
        self.register_buffer("map_scale", torch.empty(0))  # (K,) distance scale per category
        self.register_buffer("matching_scale", torch.empty(0))  # (K,) prompt-matching scale per category
        # (K,) each category's fusion rule (FusionRule's fields): weights of P and M in its sum, 1 for D * P
        self.register_buffer("fusion_segmentation_weight", torch.empty(0))
        self.register_buffer("fusion_matching_weight", torch.empty(0))
        self.register_buffer("fusion_product", torch.empty(0))
        self.register_buffer("fusion_geometric", torch.empty(0))
        # (K,) each category's thresholds on the fused image score and pixel value (1 is every threshold after them)
        self.register_buffer("image_threshold", torch.empty(0))
        self.register_buffer("pixel_threshold", torch.empty(0))
        self.prototypes: torch.Tensor
        self.prompt_features: torch.Tensor
        self.prompt_memory: torch.Tensor
        self.prompt_descriptors: torch.Tensor
        self.prompt_valid: torch.Tensor
        self.map_scale: torch.Tensor
        self.matching_scale: torch.Tensor
        self.image_threshold: torch.Tensor
        self.pixel_threshold: torch.Tensor
        self.fusion_segmentation_weight: torch.Tensor
        self.fusion_matching_weight: torch.Tensor
        self.fusion_product: torch.Tensor
        self.fusion_geometric: torch.Tensor
        self._prompt_bank: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------------ features
    def _level_closest_to(self, stride: int) -> int:
        return min(range(len(self.backbone.strides)), key=lambda index: abs(self.backbone.strides[index] - stride))

    def extract(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Frozen backbone features.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].

        Returns:
            ``(levels, features)``: the backbone maps and the ``(B, C, H/16, W/16)`` stride-aligned map.
        """
        with torch.no_grad():
            levels = self.backbone((images - self.pixel_mean) / self.pixel_std)
            features = self.tokenizer(levels, (images.shape[-2] // TOKEN_STRIDE, images.shape[-1] // TOKEN_STRIDE))
        return levels, features

    @torch.no_grad()
    def unstandardized_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H/16, W/16)`` token features before standardisation (what its statistics are fitted on).

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].
        """
        levels = self.backbone((images - self.pixel_mean) / self.pixel_std)
        return self.tokenizer.concatenate(levels, (images.shape[-2] // TOKEN_STRIDE, images.shape[-1] // TOKEN_STRIDE))

    def backbone_features(self, images: torch.Tensor) -> BackboneFeatures:
        """What the trainable heads need from the frozen backbone.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].

        Returns:
            The segmentor's skip maps and the ``(B, C, H/16, W/16)`` token-aligned features.
        """
        levels, features = self.extract(images)
        return BackboneFeatures([levels[index] for index in self._skip_levels], features)

    @staticmethod
    def descriptor(features: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, C)`` L2-normalised global descriptor used to identify the category."""
        return F.normalize(features.mean(dim=(2, 3)), dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Nearest class prototype (cosine) of each image: ``(B, C, h, w)`` -> ``(B,)`` category indices."""
        return (self.descriptor(features) @ self.prototypes.T).argmax(dim=1)

    # ------------------------------------------------------------------ calibration
    @property
    def uses_prompt_matching(self) -> bool:
        """Whether the network computes the prompt-matching map ``M``."""
        return self.patch_bank is not None

    @property
    def is_calibrated(self) -> bool:
        """Whether prototypes, prompts, map scales, matching banks, fusion rules and thresholds have been fitted."""
        buffers = [self.prompt_memory, self.map_scale, self.prototypes, self.fusion_segmentation_weight]
        buffers += [self.fusion_product, self.fusion_geometric, self.image_threshold, self.pixel_threshold]
        if self.patch_bank is not None:
            buffers += [self.patch_bank.patches, self.matching_scale, self.fusion_matching_weight]
        return self.tokenizer.has_statistics and all(buffer.numel() > 0 for buffer in buffers)

    @property
    def num_categories(self) -> int:
        """Number of categories the calibration buffers hold."""
        return int(self.prototypes.shape[0]) if self.prototypes.numel() else 0

    def set_text_embeddings(self, embeddings: torch.Tensor) -> None:
        """Set ``(K, 2, E)`` class text embeddings (no-op when text prompts are off)."""
        if self.text_tokens is not None:
            self.text_tokens.set_embeddings(embeddings)

    def set_prototypes(self, prototypes: torch.Tensor) -> None:
        """Set ``(K, C)`` category prototypes (normalised here)."""
        self.prototypes = F.normalize(prototypes.to(self.pixel_mean.device, torch.float32), dim=1)

    def set_prompt_images(self, images: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Fix the candidate normal image prompts of every category and encode them.

        Args:
            images: ``(K, M, 3, H, W)`` in [0, 1], row ``k`` up to ``M`` normal images of category ``k``
                (``(K, 3, H, W)``: one each).
            valid: ``(K, M)`` 1 where a candidate is real, 0 where a category with fewer candidates is padded;
                default all real.
        """
        if images.ndim == 4:
            images = images.unsqueeze(1)
        count, candidates = images.shape[:2]
        _, features = self.extract(images.flatten(0, 1).to(self.pixel_mean.device))
        self.prompt_features = features.unflatten(0, (count, candidates))
        self.prompt_descriptors = self.descriptor(features).unflatten(0, (count, candidates))
        self.prompt_valid = (
            torch.ones(count, candidates, device=features.device) if valid is None else valid.to(features.device).float()
        )
        self.refresh_prompt_memory()

    @torch.no_grad()
    def refresh_prompt_memory(self) -> None:
        """Re-encode the candidate prompts with the current weights (after every training phase)."""
        was_training = self.training
        self.eval()
        count, candidates = self.prompt_features.shape[:2]
        categories = torch.arange(count, device=self.prompt_features.device).repeat_interleave(candidates)
        normal_text = self.text_tokens(categories)[:, 0] if self.text_tokens is not None else None
        memory = self.reconstructor.prompt_stream(self.prompt_features.flatten(0, 1), normal_text)
        self.prompt_memory = memory.unflatten(0, (count, candidates))
        self.train(was_training)

    def set_matching_banks(self, banks: Sequence[torch.Tensor]) -> None:
        """Set one ``(N_k, C)`` coreset of normal patch embeddings per category (prompt matching)."""
        if self.patch_bank is None:
            msg = "this network was built with use_prompt_matching=False: it has no prompt-matching bank"
            raise RuntimeError(msg)
        self.patch_bank.set_banks([bank.to(self.pixel_mean.device) for bank in banks])

    def set_matching_scale(self, scale: torch.Tensor) -> None:
        """Set the ``(K,)`` per-category prompt-matching scale."""
        self.matching_scale = scale.to(self.pixel_mean.device, torch.float32).clamp_min(1e-6)

    def set_map_scale(self, scale: torch.Tensor) -> None:
        """Set the ``(K,)`` per-category distance scale."""
        self.map_scale = scale.to(self.pixel_mean.device, torch.float32).clamp_min(1e-6)

    def set_fusion_rules(self, rules: Sequence[FusionRule]) -> None:
        """Set one fusion rule per category (in category order)."""
        if self.patch_bank is None and any(rule.matching_weight and not rule.product for rule in rules):
            msg = "a fusion rule weights the prompt-matching map M, but this network has no prompt matching"
            raise ValueError(msg)
        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=self.pixel_mean.device)

        self.fusion_segmentation_weight = column([rule.segmentation_weight for rule in rules])
        self.fusion_matching_weight = column([rule.matching_weight for rule in rules])
        self.fusion_product = column([float(rule.product) for rule in rules])
        self.fusion_geometric = column([float(rule.geometric) for rule in rules])

    def set_thresholds(self, image: torch.Tensor, pixel: torch.Tensor) -> None:
        """Set the ``(K,)`` per-category thresholds of the fused image score and of the fused map."""
        self.image_threshold = image.to(self.pixel_mean.device, torch.float32).clamp_min(1e-6)
        self.pixel_threshold = pixel.to(self.pixel_mean.device, torch.float32).clamp_min(1e-6)

    @property
    def fusion_rules(self) -> list[FusionRule]:
        """The per-category fusion rules (empty before calibration)."""
        count = self.fusion_segmentation_weight.numel()
        matching = self.fusion_matching_weight.tolist() if self.fusion_matching_weight.numel() else [0.0] * count
        # rounded: the float32 buffer turns 0.3 into 0.30000001
        return [
            FusionRule(
                segmentation_weight=round(weight, 6),
                product=bool(product),
                matching_weight=round(share, 6),
                geometric=bool(geometric),
            )
            for weight, product, share, geometric in zip(
                self.fusion_segmentation_weight.tolist(),
                self.fusion_product.tolist(),
                matching,
                self.fusion_geometric.tolist(),
                strict=True,
            )
        ]

    # ------------------------------------------------------------------ heads
    def _reconstruct(
        self,
        prompt: torch.Tensor,
        features: torch.Tensor,
        text: torch.Tensor | None,
    ) -> torch.Tensor:
        query = self.reconstructor.encode(features)
        return self.reconstructor.decode(prompt, query, (features.shape[-2], features.shape[-1]), text)

    def _pixel_logits(
        self,
        reconstruction: torch.Tensor,
        features: torch.Tensor,
        skips: Sequence[torch.Tensor],
        text: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns ``(final_logits, coarse_logits, condition)``; the last two only with the segmentor."""
        residual = (reconstruction - features).abs()
        if self.segmentor is None:
            assert self.refiner is not None  # noqa: S101 - one of the two heads always exists
            return self.refiner(residual), None, None
        condition, coarse = self.segmentor(residual, features, skips, text)
        refined = (
            self.diffusion(coarse, condition, text) if self.diffusion is not None and not self.training else coarse
        )
        return refined, coarse, condition

    # ------------------------------------------------------------------ inference
    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Score images.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1] (the pre-processor only resizes).

        Returns:
            ``InferenceBatch`` with ``pred_score`` ``(B,)`` and ``anomaly_map`` ``(B, 1, H, W)``, both in [0, 1).
        """
        return self.predict_with_category(images)[0]

    def predict_with_category(self, images: torch.Tensor) -> tuple[InferenceBatch, torch.Tensor]:
        """Score images and return the category inferred for each: ``(InferenceBatch, (B,) indices)``."""
        maps = self.component_maps(images)
        category = maps.category
        anomaly_map, score = self.anomaly_map(
            maps.distance,
            maps.probability,
            self.fusion_segmentation_weight[category],
            self.fusion_product[category],
            maps.matching,
            self.fusion_matching_weight[category] if maps.matching is not None else None,
            self.image_threshold[category],
            self.pixel_threshold[category],
            self.fusion_geometric[category],
        )
        return InferenceBatch(pred_score=score, anomaly_map=anomaly_map), category

    def _check_calibrated(self) -> None:
        if not self.is_calibrated:
            msg = (
                "PromptMAD is not calibrated: its normal image prompts, class prototypes, map scales, matching "
                "banks, fusion rules and thresholds are fitted after training. Train it first, or load a trained "
                "checkpoint."
            )
            raise RuntimeError(msg)

    def retrieve_prompts(self, features: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Indices of each image's nearest candidate prompts of its category (cosine of global descriptors).

        Args:
            features: ``(B, C, h, w)`` token-aligned features.
            category: ``(B,)`` inferred categories.

        Returns:
            ``(B, k)`` candidate indices, nearest first, ``k = min(retrieved_prompts, M)``.
        """
        similarity = torch.einsum("bc,bmc->bm", self.descriptor(features), self.prompt_descriptors[category])
        # padding candidates (a category with fewer training images) can never be retrieved
        similarity = similarity - 4.0 * (1 - self.prompt_valid[category])
        count = min(self.retrieved_prompts, self.prompt_memory.shape[1])
        return similarity.topk(count, dim=1).indices

    def _best_reconstruction(
        self,
        features: torch.Tensor,
        category: torch.Tensor,
        text: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct from each retrieved prompt; per token keep the one closest to the features.

        Returns:
            ``(reconstruction (B, C, h, w), distance (B, 1, h, w))``.
        """
        chosen = self.retrieve_prompts(features, category)
        reconstruction: torch.Tensor | None = None
        distance: torch.Tensor | None = None
        for column in range(chosen.shape[1]):  # static count: unrolled on export
            memory = self.prompt_memory[category, chosen[:, column]]
            candidate = self._reconstruct(memory, features, text)
            candidate_distance = torch.linalg.vector_norm(candidate - features, dim=1, keepdim=True)
            if reconstruction is None or distance is None:
                reconstruction, distance = candidate, candidate_distance
                continue
            closer = candidate_distance < distance
            reconstruction = torch.where(closer, candidate, reconstruction)
            distance = torch.minimum(candidate_distance, distance)
        assert reconstruction is not None and distance is not None  # noqa: S101 - at least one prompt
        return reconstruction, distance

    def component_maps(self, images: torch.Tensor) -> ComponentMaps:
        """The maps that the fusion rule combines, at the image size.

        Args:
            images: ``(B, 3, H, W)`` in [0, 1].

        Returns:
            The scaled distance ``D``, the pixel-head probability ``P``, the scaled matching map ``M`` (or
            ``None``), each ``(B, 1, H, W)``, and the inferred category ``(B,)``.
        """
        self._check_calibrated()
        levels, features = self.extract(images)
        category = self.classify(features)
        text = self.text_tokens(category) if self.text_tokens is not None else None
        reconstruction, distance = self._best_reconstruction(features, category, text)
        logits, _, _ = self._pixel_logits(reconstruction, features, [levels[i] for i in self._skip_levels], text)
        matching = self._matching_distance(levels, category)
        scaled, probability, matched = self.anomaly_map.component_maps(
            distance,
            self.map_scale[category],
            logits,
            (images.shape[-2], images.shape[-1]),
            matching,
            self.matching_scale[category] if matching is not None else None,
        )
        return ComponentMaps(scaled, probability, matched, category)

    def _matching_distance(self, levels: Sequence[torch.Tensor], category: torch.Tensor) -> torch.Tensor | None:
        """``(B, 1, H/s, W/s)`` nearest-normal-patch distances of the category's bank, ``None`` without matching."""
        if self.patch_embedding is None or self.patch_bank is None:
            return None
        return self.patch_bank(self.patch_embedding(levels), category)

    def matching_embedding(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B, C, H/s, W/s)`` patch embeddings the matching banks are built from (prompt matching only).

        Args:
            levels: The backbone maps of :meth:`extract`, so that calibration runs the backbone once per batch.
        """
        if self.patch_embedding is None:
            msg = "this network was built with use_prompt_matching=False"
            raise RuntimeError(msg)
        return self.patch_embedding(levels)

    @torch.no_grad()
    def distance_quantile(self, images: torch.Tensor, quantile: float) -> torch.Tensor:
        """Per-image ``quantile`` of the reconstruction distance map (eval mode): ``(B,)``.

        Used after training to scale the distance map of each category.
        """
        _, features = self.extract(images)
        category = self.classify(features)
        text = self.text_tokens(category) if self.text_tokens is not None else None
        _, distance = self._best_reconstruction(features, category, text)
        return torch.quantile(distance.flatten(1), quantile, dim=1)

    @torch.no_grad()
    def matching_quantile(self, images: torch.Tensor, quantile: float) -> torch.Tensor:
        """Per-image ``quantile`` of the unscaled, smoothed prompt-matching map at the image size: ``(B,)``.

        Used after the banks are set to scale ``M`` of each category (on normal images outside the bank).
        """
        levels, features = self.extract(images)
        matching = self._matching_distance(levels, self.classify(features))
        if matching is None:
            msg = "this network was built with use_prompt_matching=False"
            raise RuntimeError(msg)
        smoothed = self.anomaly_map.smoothed_matching(matching, (images.shape[-2], images.shape[-1]))
        return torch.quantile(smoothed.flatten(1), quantile, dim=1)

    # ------------------------------------------------------------------ training
    def _draw_prompts(self, features: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """One normal prompt per sample: a recent normal image of the same category (never itself).

        Falls back to another image of the same category in the batch, then to the image itself, only
        before the bank holds anything for that category (the first steps).
        """
        prompts = []
        for index, (feature, label) in enumerate(zip(features, category.tolist(), strict=True)):
            bank = self._prompt_bank.get(label)
            if bank:
                prompts.append(bank[int(torch.randint(len(bank), ()))])
                continue
            partners = [other for other, value in enumerate(category.tolist()) if value == label and other != index]
            prompts.append(features[partners[int(torch.randint(len(partners), ()))]] if partners else feature)
        for feature, label in zip(features, category.tolist(), strict=True):
            bank = self._prompt_bank.setdefault(label, [])
            bank.append(feature.detach())
            if len(bank) > self.prompt_bank_size:
                bank.pop(0)
        return torch.stack(prompts)

    def training_outputs(
        self,
        images: torch.Tensor,
        anomalous_images: torch.Tensor,
        masks: torch.Tensor,
        category: torch.Tensor,
        clean: BackboneFeatures | None = None,
    ) -> TrainingOutput:
        """Everything the loss needs for one training batch.

        Args:
            images: ``(B, 3, H, W)`` normal images in [0, 1].
            anomalous_images: ``(B, 3, H, W)`` the same images with synthetic anomalies.
            masks: ``(B, 1, H, W)`` synthetic anomaly masks.
            category: ``(B,)`` category indices (known in training).
            clean: Backbone features of ``images`` where already known (see :class:`FeatureCache`); the
                backbone then runs on ``anomalous_images`` only.

        Returns:
            The reconstruction, its target, the masks and the pixel logits (see :class:`TrainingOutput`).
        """
        if clean is None:
            both = self.backbone_features(torch.cat([images, anomalous_images]))
        else:
            anomalous = self.backbone_features(anomalous_images)
            both = BackboneFeatures(
                [torch.cat(pair) for pair in zip(clean.skips, anomalous.skips, strict=True)],
                torch.cat([clean.tokens, anomalous.tokens]),
            )
        skips, features = both
        clean_tokens = features[: images.shape[0]]
        prompt_features = self._draw_prompts(clean_tokens, category)
        text = self.text_tokens(category) if self.text_tokens is not None else None
        prompt = self.reconstructor.prompt_stream(prompt_features, text[:, 0] if text is not None else None)
        text2 = torch.cat([text, text]) if text is not None else None
        reconstruction = self._reconstruct(torch.cat([prompt, prompt]), features, text2)
        mask = torch.cat([torch.zeros_like(masks), masks])
        logits, coarse, condition = self._pixel_logits(reconstruction, features, skips, text2)
        refined = None
        if self.diffusion is not None and coarse is not None and condition is not None:
            small_mask = F.adaptive_avg_pool2d(mask, coarse.shape[-2:])
            refined = self.diffusion.training_logits(small_mask, condition, coarse.detach(), text2)
        return TrainingOutput(
            reconstruction=reconstruction,
            target=torch.cat([clean_tokens, clean_tokens]),
            mask=mask,
            coarse_logits=coarse if coarse is not None else logits,
            refined_logits=refined,
        )
