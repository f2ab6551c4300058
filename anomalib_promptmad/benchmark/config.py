# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Benchmark configuration: models x datasets x settings, read from YAML into plain dataclasses.

The file is read with ``yaml.safe_load``; jsonargparse (anomalib's config engine) checks every section
against the dataclass it fills (key names, types, required keys), and the dataclasses check what their types
cannot say (unique names, a model's settings among the config's). Anything wrong raises
:class:`BenchmarkConfigError` naming the file and the key (``mvtec.yaml: models[1].init_args: expected a
mapping, got list``), before any job starts. Checks that need the model classes or the data (argument names,
dataset roots, categories) are done by :func:`~anomalib_promptmad.benchmark.plan.plan_jobs`, also before any
job starts.

Relative paths (``datasets[].root``, ``models[].config``) are resolved against the current directory,
as the ``anomalib`` command does. A dataset's ``root`` is one folder or a list of folders whose categories
form one dataset (e.g. MVTec AD's and MVTec 3D-AD's in one unified model); each category must live in
exactly one of them. Where a list is expected (``settings``, ``categories``), one name stands for a list of it.

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
from typing import Any, Literal, get_args

import yaml
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, NotEmptyStr, PositiveFloat, PositiveInt

from anomalib_promptmad.infrastructure.typed_yaml import InvalidKeyError, build, mapping

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
Setting = Literal["unified", "per_class"]
SETTINGS: tuple[Setting, ...] = get_args(Setting)
_NO_FILE = "<benchmark config>"


class BenchmarkConfigError(ValueError):
    """A benchmark configuration that cannot be run; the message names the file and the key."""


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model of the grid.

    Attributes:
        name: Label in the report (unique; default: the class name that ends ``class_path``).
        class_path: ``PromptMAD``, an ``anomalib.models`` class name (``Padim``) or a dotted path.
        init_args: Init arguments; they override the shared ``image_size``/``backbone`` and ``config``.
        config: An anomalib config file whose ``model.init_args`` are the base arguments.
        max_epochs: Trainer epochs for models that do not set their own training length
            (anomalib's Padim/Patchcore fix 1 epoch; PromptMAD takes ``max_epochs`` as an init argument).
        settings: Settings this model runs in (default: all of the config's settings).
    """

    name: NotEmptyStr | None = None
    class_path: NotEmptyStr
    init_args: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    max_epochs: PositiveInt | None = None
    settings: Setting | tuple[Setting, ...] | None = None

    def __post_init__(self) -> None:
        # frozen: the defaults that depend on another field and the one-name form are filled in once, here
        if self.name is None:
            object.__setattr__(self, "name", self.class_path.rsplit(".", 1)[-1])
        if isinstance(self.settings, str):
            object.__setattr__(self, "settings", (self.settings,))


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One dataset of the grid.

    Attributes:
        name: Label in the report (unique; default: the type).
        type: ``mvtec`` (:class:`~anomalib_promptmad.MultiClassMVTecAD` on an MVTec AD layout) or ``demo``
            (the generated demo dataset, written under ``root`` when that folder does not exist yet).
        root: Dataset root, or a tuple of roots (two or more) whose categories form one dataset; ``None`` for
            ``demo`` means ``<output_dir>/data/<name>``. A list of one root in the file is read as that root.
        categories: Category names, or ``"all"``.
        init_args: Further datamodule arguments (batch sizes, ``num_workers``, split options).
        generate: Arguments of :func:`~anomalib_promptmad.generate_demo_dataset` (``demo`` only).
    """

    name: NotEmptyStr | None = None
    type: Literal["mvtec", "demo"] = "mvtec"
    root: Path | tuple[Path, ...] | None = None
    categories: NotEmptyStr | tuple[NotEmptyStr, ...] = "all"
    init_args: dict[str, Any] = field(default_factory=dict)
    generate: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # frozen: defaults that depend on another field and the one-name forms are filled in once, here
        if self.name is None:
            object.__setattr__(self, "name", self.type)
        if isinstance(self.categories, str) and self.categories != "all":
            object.__setattr__(self, "categories", (self.categories,))
        if not self.categories:
            raise InvalidKeyError("categories", "needs at least one category, or 'all'")
        if self.generate and self.type != "demo":
            raise InvalidKeyError("generate", "only a 'demo' dataset is generated")
        for reserved in ("root", "categories"):
            if reserved in self.init_args:
                raise InvalidKeyError(f"init_args.{reserved}", f"set '{reserved}' on the dataset entry itself")
        object.__setattr__(self, "root", self._checked_root())

    @property
    def roots(self) -> tuple[Path, ...]:
        """The dataset's roots as a tuple (one entry for a single root; empty for a demo without one)."""
        if self.root is None:
            return ()
        return self.root if isinstance(self.root, tuple) else (self.root,)

    def _checked_root(self) -> Path | tuple[Path, ...] | None:
        """One root, several (a list), or none for a demo dataset; a list of one is that root."""
        if self.root is None:
            if self.type == "demo":
                return None
            problem = "required (the folder holding one sub-folder per category, or a list of such folders)"
            raise InvalidKeyError("root", problem)
        if not isinstance(self.root, tuple):
            return self.root
        if self.type == "demo":
            raise InvalidKeyError("root", "a demo dataset has one root (the folder it is generated in), got a list")
        if not self.root:
            raise InvalidKeyError("root", "needs at least one folder")
        for index, path in enumerate(self.root):
            if path in self.root[:index]:
                raise InvalidKeyError(f"root[{index}]", f"'{path}' is listed twice")
        # one root stays a plain path, so that such a dataset's jobs have the settings of a single-root entry
        return self.root[0] if len(self.root) == 1 else self.root


@dataclass(frozen=True, kw_only=True)
class SpeedSpec:
    """How inference throughput is measured (model forward in eval mode, no gradients).

    Attributes:
        batch_sizes: Batch sizes measured.
        warmup: Untimed forward passes first (allocator, lazy initialisation, caches).
        min_iterations: Timed passes at least.
        min_seconds: Timed for at least this long.
    """

    batch_sizes: tuple[PositiveInt, ...] = (1, 8)
    warmup: NonNegativeInt = 2
    min_iterations: PositiveInt = 3
    min_seconds: NonNegativeFloat = 2.0

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise InvalidKeyError("batch_sizes", "needs at least one batch size")


@dataclass(frozen=True, kw_only=True)
class FigureSpec:
    """Which test images the side-by-side anomaly-map figure shows.

    Attributes:
        images_per_category: The first ``n`` defective test images of each category (sorted by path).
        size: Side in pixels at which images, masks and maps are stored and drawn.
    """

    images_per_category: NonNegativeInt = 1
    size: PositiveInt = 128


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    """A whole benchmark: every model is run on every dataset in every setting.

    Attributes:
        models: The models.
        datasets: The datasets.
        settings: Subset of ``("unified", "per_class")``.
        image_size: ``(height, width)`` of every model's input (one number in the file: a square).
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
    settings: Setting | tuple[Setting, ...] = SETTINGS
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = (256, 256)
    backbone: NotEmptyStr = "tf_efficientnet_lite2"
    seed: int = 42
    accelerator: NotEmptyStr = "cpu"
    threads: PositiveInt | None = None
    job_timeout_s: PositiveFloat | None = None
    keep_checkpoints: bool = False
    exact_fast_coreset: bool = True
    speed: SpeedSpec = field(default_factory=SpeedSpec)
    figure: FigureSpec = field(default_factory=FigureSpec)
    source: Path | None = None

    def __post_init__(self) -> None:
        # frozen: the one-value forms become the tuples every reader expects once, here
        if isinstance(self.settings, str):
            object.__setattr__(self, "settings", (self.settings,))
        if isinstance(self.image_size, int):
            object.__setattr__(self, "image_size", (self.image_size, self.image_size))
        if not self.settings:
            raise InvalidKeyError("settings", "needs at least one setting")
        for kind, specs in (("models", self.models), ("datasets", self.datasets)):
            names = [spec.name for spec in specs]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise InvalidKeyError(kind, f"names must be unique, repeated: {duplicates}")
        for index, model in enumerate(self.models):
            if model.settings is not None and not (model.settings and set(model.settings) <= set(self.settings)):
                problem = f"must be a non-empty subset of the config's settings {list(self.settings)}"
                raise InvalidKeyError(f"models[{index}].settings", f"{problem}, got {list(model.settings)}")

    def error(self, key: str, problem: str) -> BenchmarkConfigError:
        """An error about ``key`` of this config, naming its file."""
        return BenchmarkConfigError(f"{self.source or _NO_FILE}: {key}: {problem}")


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
    try:
        values = mapping(data, "(top level)")
        # each entry on its own, so that an error names the entry (jsonargparse's would name only the list)
        models = tuple(
            build(ModelSpec, entry, f"models[{index}]", free_form={"init_args"})
            for index, entry in enumerate(_entries(values, "models"))
        )
        datasets = tuple(
            build(DatasetSpec, entry, f"datasets[{index}]", free_form={"init_args", "generate"})
            for index, entry in enumerate(_entries(values, "datasets"))
        )
        return build(
            BenchmarkConfig,
            {key: value for key, value in values.items() if key not in {"models", "datasets", "speed", "figure"}},
            models=models,
            datasets=datasets,
            speed=build(SpeedSpec, values.get("speed", {}), "speed"),
            figure=build(FigureSpec, values.get("figure", {}), "figure"),
            source=Path(source) if source is not None else None,
        )
    except InvalidKeyError as error:
        msg = f"{source or _NO_FILE}: {error}"
        raise BenchmarkConfigError(msg) from error


def _entries(values: Mapping[Any, Any], kind: str) -> list[Any]:
    entries = values.get(kind)
    if not isinstance(entries, list) or not entries:
        raise InvalidKeyError(kind, "required: a non-empty list")
    return entries
