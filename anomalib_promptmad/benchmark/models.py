# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""The models of a benchmark: exact init arguments (resolved before any job) and construction (in the job).

Every model gets the same input size and, where its architecture takes a timm backbone, the same
backbone with the same offline ImageNet weights
(:func:`~anomalib_promptmad.backbone.use_packaged_weights_for_timm`) and that backbone's own input
normalisation (:func:`~anomalib_promptmad.backbone.baseline_pre_processor`). anomalib's defaults for
Padim/Patchcore/Stfpm name ResNet layers (``layer1``...), so for timm's EfficientNet(-Lite) backbones the
layers at the same strides are filled in (:data:`EFFICIENTNET_LAYERS`).

Arguments are merged in this order, later wins:

1. ``model.init_args`` of the model's ``config`` file (an anomalib config, e.g. ``configs/promptmad_cpu.yaml``),
   with its ``trainer.max_epochs`` as ``max_epochs`` for a model that takes one;
2. benchmark defaults: ``evaluator=False``, ``visualizer=False`` (the benchmark computes its own per-category
   metrics and figures; anomalib's would double the test time), the shared ``image_size``/``backbone``,
   the layers above, and for PromptMAD on a demo dataset the dataset's ``prompts.yaml``;
3. the benchmark entry's own ``init_args``.

The merged arguments are JSON values written into each job's settings, so a report states exactly what
ran.

Patchcore keeps anomalib's default coreset ratio (0.1): in benchmark jobs it selects that coreset with the
exact fast greedy selection (:mod:`~anomalib_promptmad.benchmark.coreset`; the memory bank anomalib's
``KCenterGreedy`` gives, in minutes per category instead of hours on a CPU) unless the config sets
``exact_fast_coreset: false``.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anomalib_promptmad.benchmark.config import BenchmarkConfig, ModelSpec
from anomalib_promptmad.infrastructure.typed_yaml import InvalidKeyError, check_arguments, init_parameters

if TYPE_CHECKING:
    from anomalib.models.components import AnomalibModule

__all__ = [
    "EFFICIENTNET_LAYERS",
    "ResolvedModel",
    "build_model",
    "resolve_class",
    "resolve_model",
    "selects_coreset",
]

# timm EfficientNet(-Lite) stages at the strides of the ResNet layers anomalib's defaults use:
# blocks.1 / blocks.2 / blocks.4 = strides 4 / 8 / 16 = ResNet layer1 / layer2 / layer3.
EFFICIENTNET_LAYERS: dict[str, dict[str, Any]] = {
    # n_features: anomalib only knows defaults for resnet18 / wide_resnet50_2 (Lite2 has 192 channels here)
    "Padim": {"layers": ["blocks.1", "blocks.2", "blocks.4"], "n_features": 100},
    # anomalib's default ratio, stated so that every job's settings show it (affordable: benchmark/coreset.py)
    "Patchcore": {"layers": ["blocks.2", "blocks.4"], "coreset_sampling_ratio": 0.1},
    "Stfpm": {"layers": ["blocks.1", "blocks.2", "blocks.4"]},
}
BENCHMARK_DEFAULTS: dict[str, Any] = {"evaluator": False, "visualizer": False}
_PROMPTMAD = "anomalib_promptmad.lightning_model.PromptMAD"


@dataclass(frozen=True)
class ResolvedModel:
    """Everything a job needs to build one model, as JSON values.

    Attributes:
        class_path: Importable ``module.Class``.
        init_args: Exact init arguments (without ``pre_processor``).
        pre_processor: ``{"backbone": name or None, "image_size": [h, w]}`` for models sized by their
            pre-processor (``backbone``: normalise with that backbone's statistics; ``None``: the model's
            own default pre-processor); ``None`` for models that take ``image_size`` themselves.
        max_epochs: Trainer epochs (models that fix their own, like Padim, override it).
    """

    class_path: str
    init_args: dict[str, Any]
    pre_processor: dict[str, Any] | None
    max_epochs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def resolve_class(class_path: str) -> type[AnomalibModule]:
    """The anomalib model class named ``class_path``.

    Args:
        class_path: ``PromptMAD``, an ``anomalib.models`` class name (``Padim``) or ``module.Class``.

    Returns:
        The class.

    Raises:
        ValueError: No such class, or not an anomalib model.
    """
    from anomalib.models.components import AnomalibModule

    # imported for its side effect: publishes PromptMAD in anomalib.models (also when the start-up hook is off)
    importlib.import_module("anomalib_promptmad.lightning_model")
    if "." in class_path:
        module_name, _, name = class_path.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), name, None)
        except ImportError as error:
            msg = f"cannot import {module_name!r}: {error}"
            raise ValueError(msg) from error
    else:
        found = getattr(importlib.import_module("anomalib.models"), class_path, None)
    if not (inspect.isclass(found) and issubclass(found, AnomalibModule)):
        msg = f"{class_path!r} is not an anomalib model class (e.g. PromptMAD, Padim, Patchcore, Stfpm, or a.b.Class)"
        raise ValueError(msg)
    return found


def resolve_model(spec: ModelSpec, config: BenchmarkConfig, index: int, demo_root: Path | None) -> ResolvedModel:
    """Exact settings of one model of the grid, checked against its class's signature by jsonargparse.

    Args:
        spec: The model entry.
        config: The whole benchmark (shared image size, backbone; error messages).
        index: Position of the entry in ``models`` (error messages).
        demo_root: Root of a generated demo dataset (its ``prompts.yaml`` is PromptMAD's prompt library),
            else ``None``.

    Returns:
        The resolved model.

    Raises:
        BenchmarkConfigError: Unknown class, unreadable ``config`` file, unknown argument name, a value of the
            wrong type, a missing required argument.
    """
    key = f"models[{index}]"
    try:
        cls = resolve_class(spec.class_path)
    except ValueError as error:
        raise config.error(f"{key}.class_path", str(error)) from error
    parameters = init_parameters(cls)

    arguments: dict[str, Any] = {}
    if spec.config is not None:
        arguments.update(_init_args_from_file(spec.config, config, f"{key}.config"))
        epochs = _trainer_epochs_from_file(spec.config)
        if epochs is not None and "max_epochs" in parameters and "max_epochs" not in arguments:
            # the shipped configs set the trainer's length (so that --trainer.max_epochs overrides it on the CLI)
            arguments["max_epochs"] = epochs
    defaults: dict[str, Any] = {name: value for name, value in BENCHMARK_DEFAULTS.items() if name in parameters}
    sized_by_itself = "image_size" in parameters
    if sized_by_itself:
        defaults["image_size"] = list(config.image_size)
    if "backbone" in parameters:
        defaults["backbone"] = config.backbone
        if config.backbone.startswith("tf_efficientnet") and cls.__name__ in EFFICIENTNET_LAYERS:
            defaults.update(EFFICIENTNET_LAYERS[cls.__name__])
    if demo_root is not None and _qualified_name(cls) == _PROMPTMAD:
        defaults["prompt_library"] = str(demo_root / "prompts.yaml")
    arguments.update(defaults)
    arguments.update(spec.init_args)
    if spec.max_epochs is not None and "max_epochs" in parameters and "max_epochs" not in spec.init_args:
        arguments["max_epochs"] = spec.max_epochs

    if "pre_processor" in arguments:
        problem = "cannot be set in a benchmark: the input size and normalisation are shared by every model"
        raise config.error(f"{key}.init_args.pre_processor", problem)
    try:
        # jsonargparse checks them as the anomalib command would: names, types, required arguments
        check_arguments(cls, arguments, f"{key}.init_args", skip={"pre_processor"})
    except InvalidKeyError as error:
        raise config.error(error.key, error.problem) from error
    pre_processor = None
    if not sized_by_itself:
        backbone = arguments.get("backbone") if "backbone" in parameters else None
        pre_processor = {"backbone": backbone, "image_size": list(config.image_size)}
    return ResolvedModel(
        class_path=_qualified_name(cls),
        init_args=arguments,
        pre_processor=pre_processor,
        max_epochs=spec.max_epochs or 1,
    )


def selects_coreset(class_path: str) -> bool:
    """Whether the model subsamples a memory bank with anomalib's ``KCenterGreedy`` (anomalib's Patchcore)."""
    from anomalib.models import Patchcore

    return issubclass(resolve_class(class_path), Patchcore)


def build_model(resolved: ResolvedModel | dict[str, Any], coreset_selection: str | None = None) -> AnomalibModule:
    """Build the model of a job (in the job's process).

    Args:
        resolved: A :class:`ResolvedModel` or its ``to_dict()``.
        coreset_selection: ``"exact_fast"``: a Patchcore model selects its coreset with
            :func:`~anomalib_promptmad.benchmark.coreset.use_exact_fast_coreset` (this model only; read its
            record with :func:`~anomalib_promptmad.benchmark.coreset.coreset_selections`). ``None``: as anomalib
            ships it.

    Returns:
        The anomalib model.

    Raises:
        ValueError: An unknown ``coreset_selection``.
    """
    from anomalib_promptmad.backbone import baseline_pre_processor, use_packaged_weights_for_timm
    from anomalib_promptmad.backbone.efficientnet_lite import is_packaged

    if isinstance(resolved, dict):
        resolved = ResolvedModel(**resolved)
    cls = resolve_class(resolved.class_path)
    arguments = dict(resolved.init_args)
    backbone = arguments.get("backbone")
    # timm loads the packaged offline weights only once they are registered (this process only)
    if isinstance(backbone, str) and is_packaged(backbone.split(".")[0]):
        use_packaged_weights_for_timm([backbone.split(".")[0]])
    if resolved.pre_processor is not None:
        size = tuple(resolved.pre_processor["image_size"])
        name = resolved.pre_processor["backbone"]
        arguments["pre_processor"] = (
            baseline_pre_processor(name, size) if name else cls.configure_pre_processor(image_size=size)
        )
    model = cls(**arguments)
    if coreset_selection is not None:
        from anomalib_promptmad.benchmark.coreset import CORESET_SELECTION, use_exact_fast_coreset

        if coreset_selection != CORESET_SELECTION:
            msg = f"unknown coreset_selection {coreset_selection!r}; expected {CORESET_SELECTION!r} or None"
            raise ValueError(msg)
        use_exact_fast_coreset(model)
    return model


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _trainer_epochs_from_file(path: Path) -> int | None:
    """``trainer.max_epochs`` of an anomalib config file already read by :func:`_init_args_from_file`."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    trainer = data.get("trainer") if isinstance(data, dict) else None
    epochs = trainer.get("max_epochs") if isinstance(trainer, dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None


def _init_args_from_file(path: Path, config: BenchmarkConfig, key: str) -> dict[str, Any]:
    """``model.init_args`` of an anomalib config file."""
    if not path.is_file():
        raise config.error(key, f"file '{path}' not found (relative paths start at {Path.cwd()})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise config.error(key, f"'{path}' is not valid YAML: {error}") from error
    init_args = (data or {}).get("model", {}).get("init_args") if isinstance(data, dict) else None
    if not isinstance(init_args, dict):
        raise config.error(key, f"'{path}' has no 'model: init_args:' mapping")
    return dict(init_args)
