# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The clean training images' backbone features are cached across epochs, and change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import Callback
from torchvision.transforms.v2 import RandomHorizontalFlip

from anomalib_promptmad.backbone.feature_cache import BackboneFeatures, FeatureCache


class BackboneCalls(Callback):
    """Records the batch size of every backbone call made inside a training step, and the cache size per epoch."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.cache_sizes: list[int | None] = []
        self._epoch: int | None = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        del pl_module, batch, batch_idx
        self._epoch = trainer.current_epoch

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        del trainer, pl_module, outputs, batch, batch_idx
        self._epoch = None

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        del trainer
        cache = pl_module.training_inputs.feature_cache
        self.cache_sizes.append(None if cache is None else len(cache))

    def watch(self, backbone: torch.nn.Module) -> None:
        """Count the backbone's calls from now on."""

        def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
            del module, output
            if self._epoch is not None:
                self.calls.append((self._epoch, inputs[0].shape[0]))

        backbone.register_forward_hook(hook)


def _fit(model: Any, datamodule: Any, root: Path) -> BackboneCalls:
    recorder = BackboneCalls()
    recorder.watch(model.model.backbone)
    engine = Engine(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[recorder],
        limit_val_batches=0,
    )
    engine.fit(model=model, datamodule=datamodule)
    return recorder


def test_second_epoch_runs_the_backbone_on_synthetic_images_only(
    demo_root: Path, make_model, make_datamodule, tmp_path: Path
) -> None:
    """Epoch 1 computes clean and synthetic features; epoch 2 reads the clean ones from the cache."""
    model = make_model(max_epochs=2, prompt_library=str(demo_root / "prompts.yaml"))
    datamodule = make_datamodule(demo_root)
    recorder = _fit(model, datamodule, tmp_path)
    train_images = len(datamodule.train_data)
    first = [size for epoch, size in recorder.calls if epoch == 0]
    second = [size for epoch, size in recorder.calls if epoch == 1]
    assert sum(first) == 2 * train_images, recorder.calls
    assert sum(second) == train_images, recorder.calls
    assert recorder.cache_sizes == [train_images, train_images]
    assert model.training_inputs.feature_cache is None  # freed after training


def test_augmented_training_images_are_not_cached(demo_root: Path, make_model, make_datamodule, tmp_path: Path) -> None:
    """With training augmentations an image's features change every epoch: no cache."""
    model = make_model(max_epochs=1, prompt_library=str(demo_root / "prompts.yaml"))
    datamodule = make_datamodule(demo_root, train_augmentations=RandomHorizontalFlip())
    recorder = _fit(model, datamodule, tmp_path)
    assert recorder.cache_sizes == [None]
    assert sum(size for _, size in recorder.calls) == 2 * len(datamodule.train_data)


def test_cached_features_give_identical_training_outputs(make_model) -> None:
    """Training outputs with cached clean features equal those of one backbone pass over both halves."""
    model = make_model()
    network = model.model
    network.set_text_embeddings(torch.nn.functional.normalize(torch.randn(2, 2, 384), dim=-1))
    network.train()
    generator = torch.Generator().manual_seed(0)
    images, anomalous = torch.rand(2, 4, 3, 64, 64, generator=generator)
    masks = (torch.rand(4, 1, 64, 64, generator=generator) > 0.9).float()
    category = torch.tensor([0, 0, 1, 1])
    cache = FeatureCache(max_megabytes=1)
    keys = [f"{index}.png" for index in range(4)]
    cache.put(keys, network.backbone_features(images))

    torch.manual_seed(1)
    reference = network.training_outputs(images, anomalous, masks, category)
    network._prompt_bank.clear()  # noqa: SLF001 - the prompt draw must start from the same state
    torch.manual_seed(1)
    cached = network.training_outputs(images, anomalous, masks, category, cache.get(keys))
    assert (reference.refined_logits is None) == (cached.refined_logits is None)
    for name, value in reference._asdict().items():
        if value is not None:
            torch.testing.assert_close(getattr(cached, name), value, rtol=0, atol=1e-6)


def test_cache_keeps_to_its_budget_and_needs_every_key() -> None:
    """Entries beyond the budget are dropped (and recomputed by the caller); a partial hit is a miss."""
    one_image = BackboneFeatures([torch.zeros(1, 4, 16, 16)], torch.zeros(1, 8, 16, 16))  # 12 KiB per image
    cache = FeatureCache(max_megabytes=25 / 1024)
    for index in range(3):
        cache.put([f"{index}.png"], one_image)
    assert len(cache) == 2
    assert cache.bytes <= cache.max_bytes
    assert cache.get(["0.png", "1.png"]).tokens.shape == (2, 8, 16, 16)
    assert cache.get(["0.png", "2.png"]) is None
    cache.clear()
    assert len(cache) == 0
    assert cache.bytes == 0
    with pytest.raises(ValueError, match="max_megabytes"):
        FeatureCache(max_megabytes=0)


def test_negative_cache_budget_is_refused(make_model) -> None:
    """A negative budget is a clear error naming the option."""
    with pytest.raises(ValueError, match="feature_cache_mb"):
        make_model(feature_cache_mb=-1)
