# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Unit tests of the network stages: shapes, masks, determinism, gradient flow."""

from __future__ import annotations

import pytest
import torch

from anomalib_promptmad.anomaly_map import GEOMETRIC_FLOOR, AnomalyMapGenerator, SeparableGaussianBlur, fuse_maps
from anomalib_promptmad.losses import PromptMADLoss, dice_loss
from anomalib_promptmad.reconstruction import FeatureTokenizer, PromptReconstructor, neighbour_mask
from anomalib_promptmad.segmentor import DiffusionRefinement, ResidualRefiner, TextGuidedSegmentor


def test_neighbour_mask_blocks_exactly_the_local_window() -> None:
    mask = neighbour_mask((5, 6), (3, 3))
    assert mask.shape == (30, 30)
    centre = 2 * 6 + 3  # token (2, 3)
    blocked = mask[centre].view(5, 6).nonzero().tolist()
    assert sorted(blocked) == sorted([y, x] for y in (1, 2, 3) for x in (2, 3, 4))
    # corner token: window clipped at the border
    assert mask[0].view(5, 6).sum() == 4


def test_tokenizer_aligns_levels_to_stride_16() -> None:
    tokenizer = FeatureTokenizer([4, 8, 16], [4, 8, 16])
    levels = [torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    out = tokenizer(levels, (4, 4))
    assert out.shape == (2, 28, 4, 4)
    assert torch.equal(out[:, 12:], levels[2])


def _reconstructor(use_text: bool = True) -> PromptReconstructor:
    return PromptReconstructor(12, (4, 4), hidden_dim=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=2,
                               dim_feedforward=32, use_text=use_text)


def test_reconstructor_shapes_and_two_way_gradients() -> None:
    model = _reconstructor()
    features = torch.randn(3, 12, 4, 4)
    prompt = model.prompt_stream(torch.randn(3, 12, 4, 4), torch.randn(3, 16))
    reconstruction = model.decode(prompt, model.encode(features), (4, 4), torch.randn(3, 2, 16))
    assert reconstruction.shape == features.shape
    reconstruction.square().mean().backward()
    # the image->prompt attention of every layer but the last feeds the next layer's prompt update; the
    # reference code discards it, so check that it receives a gradient here
    first_layer = model.decoder.layers[0]
    assert first_layer.image_to_prompt.in_proj_weight.grad is not None
    assert first_layer.image_to_prompt.in_proj_weight.grad.abs().sum() > 0
    assert first_layer.prompt_to_text.query.weight.grad.abs().sum() > 0
    assert model.text_to_prompt.weight.grad.abs().sum() > 0


def test_reconstructor_without_text_has_no_text_parameters() -> None:
    model = _reconstructor(use_text=False)
    assert model.text_to_prompt is None
    assert all(layer.prompt_to_text is None for layer in model.decoder.layers)
    assert not any("text" in name for name, _ in model.named_parameters())


def test_reconstructor_serves_other_grid_sizes() -> None:
    model = _reconstructor().eval()
    features = torch.randn(1, 12, 6, 6)
    prompt = model.prompt_stream(torch.randn(1, 12, 6, 6), None)
    assert model.decode(prompt, model.encode(features), (6, 6), None).shape == (1, 12, 6, 6)


def test_feature_jitter_only_in_training() -> None:
    model = _reconstructor()
    features = torch.randn(1, 12, 4, 4)
    model.eval()
    assert torch.equal(model.encode(features), model.encode(features))
    model.train()
    torch.manual_seed(0)
    first = model.encode(features)
    torch.manual_seed(1)
    assert not torch.allclose(first, model.encode(features))


def test_refiner_and_segmentor_output_stride_4() -> None:
    residual = torch.randn(2, 12, 4, 4)
    assert ResidualRefiner(12, 8)(residual).shape == (2, 1, 16, 16)
    segmentor = TextGuidedSegmentor(12, [6, 5], text_dim=16, dim=8, num_heads=2, decoder_channels=(8, 4))
    condition, logits = segmentor(residual, torch.randn(2, 12, 4, 4),
                                  [torch.randn(2, 6, 8, 8), torch.randn(2, 5, 16, 16)], torch.randn(2, 2, 16))
    assert condition.shape == (2, 4, 16, 16)
    assert logits.shape == (2, 1, 16, 16)


def test_diffusion_refinement_is_deterministic_and_uses_text() -> None:
    torch.manual_seed(0)
    diffusion = DiffusionRefinement(4, steps=10, text_dim=6).eval()
    torch.nn.init.normal_(diffusion.time_embedding.weight, std=0.5)
    coarse, condition, text = torch.randn(2, 1, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 2, 6)
    first = diffusion(coarse, condition, text)
    assert first.shape == (2, 1, 8, 8)
    assert torch.equal(first, diffusion(coarse, condition, text))
    assert not torch.allclose(first, diffusion(coarse, condition, torch.randn(2, 2, 6)))
    # the schedule ends close to pure noise
    assert diffusion.alphas_cumprod[-1] < 0.1
    assert diffusion.alphas_cumprod[0] > 0.99


def test_diffusion_steps_run_the_denoiser_steps_times() -> None:
    diffusion = DiffusionRefinement(4, steps=7).eval()
    calls = []
    original = diffusion.denoise
    diffusion.denoise = lambda *args: calls.append(1) or original(*args)  # type: ignore[method-assign]
    diffusion(torch.randn(1, 1, 8, 8), torch.randn(1, 4, 8, 8), None)
    assert len(calls) == 7


def test_anomaly_map_in_unit_interval_and_order_preserving() -> None:
    generator = AnomalyMapGenerator(pool_size=4)
    distance, probability, matching = generator.component_maps(
        torch.rand(2, 1, 4, 4) * 50, torch.tensor([10.0, 20.0]), torch.randn(2, 1, 16, 16), (32, 32)
    )
    assert matching is None
    assert distance.shape == probability.shape == (2, 1, 32, 32)
    anomaly_map, score = generator(distance, probability, torch.full((2,), 0.5), torch.zeros(2))
    assert anomaly_map.shape == (2, 1, 32, 32)
    assert score.shape == (2,)
    assert anomaly_map.min() >= 0
    assert anomaly_map.max() < 1
    # distances only (weight 0): the map ranks pixels exactly as the distances do
    plain, _ = generator(distance, probability, torch.zeros(2), torch.zeros(2))
    order = distance.flatten().argsort()
    assert bool((plain.flatten()[order].diff() >= -1e-6).all())  # up to float rounding of x / (1 + x)


def test_anomaly_map_fuses_each_image_with_its_own_rule() -> None:
    """One batch, two categories: image 0 takes the weighted sum, image 1 the product."""
    distance, probability = torch.rand(2, 1, 8, 8) * 3, torch.rand(2, 1, 8, 8)
    anomaly_map, _ = AnomalyMapGenerator(pool_size=4)(
        distance, probability, torch.tensor([0.3, 0.9]), torch.tensor([0.0, 1.0])
    )
    fused = anomaly_map / (1 - anomaly_map)  # undo the x / (1 + x) squashing
    assert torch.allclose(fused[0], 0.7 * distance[0] + 0.3 * probability[0], atol=1e-5)
    assert torch.allclose(fused[1], distance[1] * probability[1], atol=1e-5)


def test_anomaly_map_geometric_rule_per_image_and_in_onnx(tmp_path) -> None:
    """Image 0 the sum, 1 the product, 2 ``D^0.1 * P^0.3 * M^0.6``: eager, and ONNX Runtime on the exported graph."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    distance, probability, matching = (torch.rand(3, 1, 8, 8, generator=generator) * 3 for _ in range(3))
    probability = probability / 3
    probability[2, 0, 0, 0] = 0.0  # a saturated sigmoid: counts as GEOMETRIC_FLOOR, not log(0)
    rules = (
        torch.tensor([0.3, 0.0, 0.3]),  # P weight
        torch.tensor([0.0, 1.0, 0.0]),  # product
        torch.tensor([0.2, 0.0, 0.6]),  # M weight
        torch.tensor([0.0, 0.0, 1.0]),  # geometric
    )

    class Fusion(torch.nn.Module):
        def forward(self, *maps_and_rules: torch.Tensor) -> torch.Tensor:
            d, p, m, weight, product, matching_weight, geometric = maps_and_rules
            return fuse_maps(d, p, weight, product, m, matching_weight, geometric)

    inputs = (distance, probability, matching, *rules)
    fused = Fusion().eval()(*inputs)
    assert torch.allclose(fused[0], 0.5 * distance[0] + 0.3 * probability[0] + 0.2 * matching[0], atol=1e-5)
    assert torch.allclose(fused[1], distance[1] * probability[1], atol=1e-5)
    floor = probability[2].clamp_min(GEOMETRIC_FLOOR)
    assert torch.allclose(fused[2], distance[2] ** 0.1 * floor**0.3 * matching[2] ** 0.6, rtol=1e-4)
    assert float(fused[2, 0, 0, 0]) > 0

    path = tmp_path / "fusion.onnx"
    names = ["distance", "probability", "matching", "weight", "product", "matching_weight", "geometric"]
    torch.onnx.export(Fusion().eval(), inputs, path, input_names=names, dynamo=True)
    session = onnxruntime.InferenceSession(str(path))
    (exported,) = session.run(None, {name: value.numpy() for name, value in zip(names, inputs, strict=True)})
    assert float(abs(torch.from_numpy(exported) - fused).max()) < 1e-5


def test_losses_and_weights() -> None:
    reconstruction, target = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2)
    mask = torch.zeros(2, 1, 8, 8)
    mask[1, :, 2:5, 2:5] = 1
    logits = torch.randn(2, 1, 4, 4)
    terms = PromptMADLoss(reconstruction_weight=1.0, focal_weight=0.0, dice_weight=0.5)(
        reconstruction, target, [logits], mask,
    )
    assert torch.allclose(terms["loss"], terms["reconstruction"] + 0.5 * terms["dice"])
    only_reconstruction = PromptMADLoss()(reconstruction, target, [], mask)
    assert set(only_reconstruction) == {"reconstruction", "loss"}
    # a perfect prediction has (almost) no Dice loss, an inverted one has a large one
    perfect = torch.where(mask > 0, 20.0, -20.0)
    assert dice_loss(perfect, mask) < 0.05
    assert dice_loss(-perfect, mask) > 0.9


def test_one_token_impulse_lands_on_the_same_pixels_in_every_map() -> None:
    """D (stride 16), P (stride 4) and M (stride 8) are registered to the pixel: an impulse in one cell of each
    grid, covering the same image region, peaks at the same pixels after upsampling."""
    generator = AnomalyMapGenerator(pool_size=4, matching_sigma=0.5)
    distance = torch.zeros(1, 1, 4, 4)
    distance[..., 1, 2] = 1.0  # pixels 16..31 x 32..47
    logits = torch.full((1, 1, 16, 16), -10.0)
    logits[..., 4:8, 8:12] = 10.0  # the same pixels at stride 4
    matching = torch.zeros(1, 1, 8, 8)
    matching[..., 2:4, 4:6] = 1.0  # and at stride 8
    scaled, probability, matched = generator.component_maps(
        distance, torch.ones(1), logits, (64, 64), matching, torch.ones(1)
    )
    assert matched is not None
    for component in (scaled, probability, matched):
        rows = component[0, 0].amax(dim=1)
        cols = component[0, 0].amax(dim=0)
        # symmetric about the region's centre (23.5, 39.5): the same pixels, not half a cell apart
        assert torch.allclose(rows[16:24], rows[16:32].flip(0)[:8], atol=1e-5), component
        assert torch.allclose(cols[32:40], cols[32:48].flip(0)[:8], atol=1e-5), component
        positions = torch.arange(64, dtype=torch.float32)
        row_weights, col_weights = rows - rows.min(), cols - cols.min()
        assert float((row_weights * positions).sum() / row_weights.sum()) == pytest.approx(23.5, abs=1e-3)
        assert float((col_weights * positions).sum() / col_weights.sum()) == pytest.approx(39.5, abs=1e-3)


@pytest.mark.parametrize("sigma", [0.5, 4.0])
def test_separable_blur_equals_anomalibs_gaussian_blur(sigma: float) -> None:
    from anomalib.models.components import GaussianBlur2d

    maps = torch.rand(3, 1, 40, 56, generator=torch.Generator().manual_seed(0))
    expected = GaussianBlur2d(sigma=sigma, channels=1)(maps)
    assert torch.allclose(SeparableGaussianBlur(sigma)(maps), expected, atol=1e-6)
