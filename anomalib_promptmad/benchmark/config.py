# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Benchmark configuration: models x datasets x settings, read from YAML into plain dataclasses.

The file is read with ``yaml.safe_load`` and checked key by key: an unknown key, a wrong type or a
missing required value raises :class:`BenchmarkConfigError` naming the file and the key
(``mvtec.yaml: models[1].init_args: expected a mapping, got list``), before any job starts. Checks that
need the model classes or the data (argument names, dataset roots, categories) are done by
:func:`~anomalib_promptmad.benchmark.plan.plan_jobs`, also before any job starts.

Relative paths (``datasets[].root``, ``models[].config``) are resolved against the current directory,
as the ``anomalib`` command does. A dataset's ``root`` is one folder or a list of folders whose categories
form one dataset (e.g. MVTec AD's and MVTec 3D-AD's in one unified model); each category must live in
exactly one of them.

Example file::

    image_size: 256
    backbone: tf_efficientnet_lite2
    settings: [unified, per_class]
    datasets:
      - {name: mvtec, type: mvtec, root: ../shared/data/mvtec_ad_256, categories: [bottle, pill]}
      - name: mvtec_two_roots
        root: [../shared/data/mvtec_ad_256, ../shared/data/mvtec_3d_ad_rgb_256]
        categories: [bottle, tire]
    models:
      - {name: PromptMAD, class_path: PromptMAD, config: configs/promptmad_cpu.yaml}
      - {name: Padim, class_path: Padim}
      - {name: Patchcore, class_path: Patchcore}   # anomalib's coreset ratio 0.1
    exact_fast_coreset: true   # the default: Patchcore's coreset with the exact fast greedy selection
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SETTINGS",
    "BenchmarkConfig",
    "BenchmarkConfigError",
    "DatasetSpec",
    "FigureSpec",
    "ModelSpec",
    "SpeedSpec",
    "load_config",
    "parse_config",
]

# unified: one model trained on all chosen categories, evaluated per category;
# per_class: one model per category, the classic anomalib setting.
SETTINGS = ("unified", "per_class")
DATASET_TYPES = ("mvtec", "demo")


class BenchmarkConfigError(ValueError):
    """A benchmark configuration that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of the grid.

    Attributes:
        name: Label in the report (unique).
        class_path: ``PromptMAD``, an ``anomalib.models`` class name (``Padim``) or a dotted path.
        init_args: Init arguments; they override the shared ``image_size``/``backbone`` and ``config``.
        config: An anomalib config file whose ``model.init_args`` are the base arguments.
        max_epochs: Trainer epochs for models that do not set their own training length
            (anomalib's Padim/Patchcore fix 1 epoch; PromptMAD takes ``max_epochs`` as an init argument).
        settings: Settings this model runs in (default: all of the config's settings).
    """

    name: str
    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    max_epochs: int | None = None
    settings: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of the grid.

    Attributes:
        name: Label in the report (unique).
        type: ``mvtec`` (:class:`~anomalib_promptmad.MultiClassMVTecAD` on an MVTec AD layout) or ``demo``
            (the generated demo dataset, written under ``root`` when that folder does not exist yet).
        root: Dataset root, or a tuple of roots (two or more) whose categories form one dataset; ``None`` for
            ``demo`` means ``<output_dir>/data/<name>``. A list of one root in the file is read as that root.
        categories: Category names, or ``"all"``.
        init_args: Further datamodule arguments (batch sizes, ``num_workers``, split options).
        generate: Arguments of :func:`~anomalib_promptmad.generate_demo_dataset` (``demo`` only).
    """

    name: str
    type: str
    root: Path | tuple[Path, ...] | None
    categories: tuple[str, ...] | str = "all"
    init_args: dict[str, Any] = field(default_factory=dict)
    generate: dict[str, Any] = field(default_factory=dict)

    @property
    def roots(self) -> tuple[Path, ...]:
        """The dataset's roots as a tuple (one entry for a single root; empty for a demo without one)."""
        if self.root is None:
            return ()
        return self.root if isinstance(self.root, tuple) else (self.root,)


@dataclass(frozen=True)
class SpeedSpec:
    """How inference throughput is measured (model forward in eval mode, no gradients).

    Attributes:
        batch_sizes: Batch sizes measured.
        warmup: Untimed forward passes first (allocator, lazy initialisation, caches).
        min_iterations: Timed passes at least.
        min_seconds: Timed for at least this long.
    """

    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 2
    min_iterations: int = 3
    min_seconds: float = 2.0


@dataclass(frozen=True)
class FigureSpec:
    """Which test images the side-by-side anomaly-map figure shows.

    Attributes:
        images_per_category: The first ``n`` defective test images of each category (sorted by path).
        size: Side in pixels at which images, masks and maps are stored and drawn.
    """

    images_per_category: int = 1
    size: int = 128


@dataclass(frozen=True)
class BenchmarkConfig:
    """A whole benchmark: every model is run on every dataset in every setting.

    Attributes:
        models: The models.
        datasets: The datasets.
        settings: Subset of ``("unified", "per_class")``.
        image_size: ``(height, width)`` of every model's input.
        backbone: timm backbone shared by every model whose architecture takes one.
        seed: Seed of every job.
        accelerator: Lightning accelerator of every job (``cpu``, ``gpu``, ``auto``).
        threads: torch threads per job (``None``: torch's default, or ``OMP_NUM_THREADS``).
        job_timeout_s: A job running longer is killed and reported as failed (``None``: no limit).
        keep_checkpoints: Keep each job's anomalib working folder (checkpoints) after it succeeded.
        exact_fast_coreset: Patchcore jobs select their memory-bank coreset with
            :func:`~anomalib_promptmad.matching.greedy_coreset_indices`: the indices of anomalib's
            ``KCenterGreedy``, in minutes instead of hours on a CPU (see
            :mod:`~anomalib_promptmad.benchmark.coreset`). Stated in those jobs' settings. ``False``: anomalib's
            own selection, and those jobs' settings are as before this option existed.
        speed: Throughput measurement.
        figure: Anomaly-map figure.
        source: The file the config was read from, if any (used in error messages).
    """

    models: tuple[ModelSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    settings: tuple[str, ...] = SETTINGS
    image_size: tuple[int, int] = (256, 256)
    backbone: str = "tf_efficientnet_lite2"
    seed: int = 42
    accelerator: str = "cpu"
    threads: int | None = None
    job_timeout_s: float | None = None
    keep_checkpoints: bool = False
    exact_fast_coreset: bool = True
    speed: SpeedSpec = field(default_factory=SpeedSpec)
    figure: FigureSpec = field(default_factory=FigureSpec)
    source: Path | None = None

    def error(self, key: str, problem: str) -> BenchmarkConfigError:
        """An error about ``key`` of this config, naming its file."""
        return BenchmarkConfigError(f"{self.source or '<benchmark config>'}: {key}: {problem}")


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and check a benchmark config file.

    Args:
        path: YAML file.

    Returns:
        The checked configuration.

    Raises:
        BenchmarkConfigError: The file is missing, not YAML, or a key is wrong (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: benchmark config file not found"
        raise BenchmarkConfigError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        msg = f"{path}: not valid YAML: {error}"
        raise BenchmarkConfigError(msg) from error
    return parse_config(data, source=path)


def parse_config(data: Any, source: str | Path | None = None) -> BenchmarkConfig:
    """Check a parsed config (a mapping) and build the dataclasses.

    Args:
        data: The mapping, e.g. from ``yaml.safe_load``.
        source: Where it came from, for error messages.

    Returns:
        The checked configuration.

    Raises:
        BenchmarkConfigError: On any wrong key or value (the message names it).
    """
    reader = _Reader(str(source) if source is not None else "<benchmark config>")
    root = reader.mapping(data, "(top level)")
    reader.known_keys(
        root,
        "",
        {
            "models",
            "datasets",
            "settings",
            "image_size",
            "backbone",
            "seed",
            "accelerator",
            "threads",
            "job_timeout_s",
            "keep_checkpoints",
            "exact_fast_coreset",
            "speed",
            "figure",
        },
    )
    settings = tuple(reader.string_list(root.get("settings", list(SETTINGS)), "settings"))
    for index, setting in enumerate(settings):
        if setting not in SETTINGS:
            raise reader.error(f"settings[{index}]", f"unknown setting {setting!r}; choose from {list(SETTINGS)}")
    if not settings:
        raise reader.error("settings", "needs at least one setting")
    models = tuple(
        _model(reader, entry, f"models[{index}]", settings)
        for index, entry in enumerate(reader.non_empty_list(root.get("models"), "models"))
    )
    datasets = tuple(
        _dataset(reader, entry, f"datasets[{index}]")
        for index, entry in enumerate(reader.non_empty_list(root.get("datasets"), "datasets"))
    )
    for kind, specs in (("models", models), ("datasets", datasets)):
        names = [spec.name for spec in specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise reader.error(kind, f"names must be unique, repeated: {duplicates}")
    return BenchmarkConfig(
        models=models,
        datasets=datasets,
        settings=settings,
        image_size=_image_size(reader, root.get("image_size", 256), "image_size"),
        backbone=reader.string(root.get("backbone", "tf_efficientnet_lite2"), "backbone"),
        seed=reader.integer(root.get("seed", 42), "seed"),
        accelerator=reader.string(root.get("accelerator", "cpu"), "accelerator"),
        threads=reader.optional_positive_int(root.get("threads"), "threads"),
        job_timeout_s=reader.optional_positive_float(root.get("job_timeout_s"), "job_timeout_s"),
        keep_checkpoints=reader.boolean(root.get("keep_checkpoints", False), "keep_checkpoints"),
        exact_fast_coreset=reader.boolean(root.get("exact_fast_coreset", True), "exact_fast_coreset"),
        speed=_speed(reader, root.get("speed", {}), "speed"),
        figure=_figure(reader, root.get("figure", {}), "figure"),
        source=Path(source) if source is not None else None,
    )


def _model(reader: _Reader, entry: Any, key: str, settings: tuple[str, ...]) -> ModelSpec:
    values = reader.mapping(entry, key)
    reader.known_keys(values, key, {"name", "class_path", "init_args", "config", "max_epochs", "settings"})
    class_path = reader.string(values.get("class_path"), f"{key}.class_path")
    own_settings = None
    if "settings" in values:
        own_settings = tuple(reader.string_list(values["settings"], f"{key}.settings"))
        unknown = [s for s in own_settings if s not in settings]
        if unknown or not own_settings:
            problem = f"must be a non-empty subset of the config's settings {list(settings)}, got {list(own_settings)}"
            raise reader.error(f"{key}.settings", problem)
    config = values.get("config")
    return ModelSpec(
        name=reader.string(values.get("name", class_path.rsplit(".", 1)[-1]), f"{key}.name"),
        class_path=class_path,
        init_args=dict(reader.mapping(values.get("init_args", {}), f"{key}.init_args")),
        config=Path(reader.string(config, f"{key}.config")) if config is not None else None,
        max_epochs=reader.optional_positive_int(values.get("max_epochs"), f"{key}.max_epochs"),
        settings=own_settings,
    )


def _dataset(reader: _Reader, entry: Any, key: str) -> DatasetSpec:
    values = reader.mapping(entry, key)
    reader.known_keys(values, key, {"name", "type", "root", "categories", "init_args", "generate"})
    kind = reader.string(values.get("type", "mvtec"), f"{key}.type")
    if kind not in DATASET_TYPES:
        raise reader.error(f"{key}.type", f"unknown dataset type {kind!r}; choose from {list(DATASET_TYPES)}")
    root = _dataset_root(reader, values.get("root"), f"{key}.root", kind)
    categories: tuple[str, ...] | str = "all"
    raw_categories = values.get("categories", "all")
    if raw_categories != "all":
        categories = tuple(reader.string_list(raw_categories, f"{key}.categories"))
        if not categories:
            raise reader.error(f"{key}.categories", "needs at least one category, or 'all'")
    generate = dict(reader.mapping(values.get("generate", {}), f"{key}.generate"))
    if generate and kind != "demo":
        raise reader.error(f"{key}.generate", "only a 'demo' dataset is generated")
    init_args = dict(reader.mapping(values.get("init_args", {}), f"{key}.init_args"))
    for reserved in ("root", "categories"):
        if reserved in init_args:
            raise reader.error(f"{key}.init_args.{reserved}", f"set '{reserved}' on the dataset entry itself")
    return DatasetSpec(
        name=reader.string(values.get("name", kind), f"{key}.name"),
        type=kind,
        root=root,
        categories=categories,
        init_args=init_args,
        generate=generate,
    )


def _dataset_root(reader: _Reader, value: Any, key: str, kind: str) -> Path | tuple[Path, ...] | None:
    """One root (a string), or several (a list of strings); a list of one is that root."""
    if value is None:
        if kind == "demo":
            return None
        raise reader.error(key, "required (the folder holding one sub-folder per category, or a list of such folders)")
    if not isinstance(value, list):
        return Path(reader.string(value, key))
    if kind == "demo":
        raise reader.error(key, "a demo dataset has one root (the folder it is generated in), got a list")
    roots = [Path(reader.string(item, f"{key}[{index}]")) for index, item in enumerate(value)]
    if not roots:
        raise reader.error(key, "needs at least one folder")
    for index, path in enumerate(roots):
        if path in roots[:index]:
            raise reader.error(f"{key}[{index}]", f"'{path}' is listed twice")
    # one root stays a plain path, so that such a dataset's jobs have the settings of a single-root entry
    return roots[0] if len(roots) == 1 else tuple(roots)


def _image_size(reader: _Reader, value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (value[0], value[1])
    raise reader.error(key, f"expected a positive integer or [height, width], got {value!r}")


def _speed(reader: _Reader, value: Any, key: str) -> SpeedSpec:
    values = reader.mapping(value, key)
    reader.known_keys(values, key, {"batch_sizes", "warmup", "min_iterations", "min_seconds"})
    defaults = SpeedSpec()
    batch_sizes = values.get("batch_sizes", list(defaults.batch_sizes))
    if not isinstance(batch_sizes, list) or not batch_sizes:
        raise reader.error(f"{key}.batch_sizes", f"expected a non-empty list of positive integers, got {batch_sizes!r}")
    return SpeedSpec(
        batch_sizes=tuple(
            reader.optional_positive_int(size, f"{key}.batch_sizes[{index}]") or 1
            for index, size in enumerate(batch_sizes)
        ),
        warmup=reader.non_negative_int(values.get("warmup", defaults.warmup), f"{key}.warmup"),
        min_iterations=reader.optional_positive_int(
            values.get("min_iterations", defaults.min_iterations), f"{key}.min_iterations"
        )
        or defaults.min_iterations,
        min_seconds=reader.non_negative_float(values.get("min_seconds", defaults.min_seconds), f"{key}.min_seconds"),
    )


def _figure(reader: _Reader, value: Any, key: str) -> FigureSpec:
    values = reader.mapping(value, key)
    reader.known_keys(values, key, {"images_per_category", "size"})
    defaults = FigureSpec()
    return FigureSpec(
        images_per_category=reader.non_negative_int(
            values.get("images_per_category", defaults.images_per_category), f"{key}.images_per_category"
        ),
        size=reader.optional_positive_int(values.get("size", defaults.size), f"{key}.size") or defaults.size,
    )


class _Reader:
    """Type checks of parsed YAML values whose errors name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str) -> BenchmarkConfigError:
        return BenchmarkConfigError(f"{self.source}: {key}: {problem}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        return value

    def known_keys(self, values: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        unknown = sorted(str(k) for k in values if k not in allowed)
        if unknown:
            where = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.error(where, f"unknown key; allowed keys: {sorted(allowed)}")

    def non_empty_list(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.error(key, "required: a non-empty list")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def string_list(self, value: Any, key: str) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(key, f"expected a list of strings, got {type(value).__name__}")
        return [self.string(item, f"{key}[{index}]") for index, item in enumerate(value)]

    def integer(self, value: Any, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(key, f"expected an integer, got {value!r}")
        return value

    def non_negative_int(self, value: Any, key: str) -> int:
        if self.integer(value, key) < 0:
            raise self.error(key, f"must be >= 0, got {value}")
        return value

    def optional_positive_int(self, value: Any, key: str) -> int | None:
        if value is None:
            return None
        if self.integer(value, key) < 1:
            raise self.error(key, f"must be >= 1, got {value}")
        return value

    def non_negative_float(self, value: Any, key: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise self.error(key, f"expected a number >= 0, got {value!r}")
        return float(value)

    def optional_positive_float(self, value: Any, key: str) -> float | None:
        if value is None:
            return None
        if self.non_negative_float(value, key) == 0:
            raise self.error(key, "must be > 0")
        return float(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value
