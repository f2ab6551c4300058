# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Expand a benchmark config into jobs, checking everything a job would trip over later.

One job = one model trained and tested once:

* ``unified``: one job per (dataset, model), trained on all chosen categories, evaluated per category;
* ``per_class``: one job per (dataset, model, category), trained and tested on that category only.

Planning resolves every model's exact arguments (:func:`~anomalib_promptmad.benchmark.models.resolve_model`),
checks each dataset root and its categories, and generates demo datasets that do not exist yet, so a bad
config fails in seconds, not after the first hour of training.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anomalib_promptmad.benchmark.config import BenchmarkConfig, DatasetSpec
from anomalib_promptmad.benchmark.models import resolve_model

__all__ = ["DATAMODULE_DEFAULTS", "JobSpec", "PreparedDataset", "plan_jobs", "prepare_dataset"]

# Explicit so that the settings of a run state them: anomalib's default of 8 workers oversubscribes small machines.
DATAMODULE_DEFAULTS: dict[str, Any] = {"train_batch_size": 8, "eval_batch_size": 8, "num_workers": 0}


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready for jobs: absolute root and the checked, sorted categories."""

    spec: DatasetSpec
    root: Path
    categories: tuple[str, ...]


@dataclass(frozen=True)
class JobSpec:
    """Everything one job runs with (its ``job.json``); equal specs mean a finished job can be reused.

    Attributes:
        id: Folder name of the job (``<dataset>__<setting>__<model>[__<category>]``).
        dataset: Dataset label.
        dataset_type: ``mvtec`` or ``demo``.
        root: Absolute dataset root.
        categories: Categories trained and tested.
        setting: ``unified`` or ``per_class``.
        model: Model label.
        model_settings: :class:`~anomalib_promptmad.benchmark.models.ResolvedModel` as a dict.
        datamodule: Datamodule arguments besides ``root``/``categories``.
        seed: Seed.
        accelerator: Lightning accelerator.
        threads: torch threads (``None``: default).
        speed: Throughput measurement settings.
        figure: Anomaly-map sample settings.
        keep_checkpoints: Keep anomalib's working folder after success.
    """

    id: str
    dataset: str
    dataset_type: str
    root: str
    categories: list[str]
    setting: str
    model: str
    model_settings: dict[str, Any]
    datamodule: dict[str, Any]
    seed: int
    accelerator: str
    threads: int | None
    speed: dict[str, Any]
    figure: dict[str, Any]
    keep_checkpoints: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists, so that it compares equal to a reloaded ``job.json``)."""
        return _plain(asdict(self))


def prepare_dataset(config: BenchmarkConfig, index: int, output_dir: Path, generate: bool = True) -> PreparedDataset:
    """Check one dataset entry (generating a demo dataset that does not exist yet).

    Args:
        config: The benchmark.
        index: Position in ``datasets``.
        output_dir: Run folder (default home of demo datasets).
        generate: Generate a missing demo dataset. ``False`` (``promptmad-benchmark --list``, which runs
            nothing) only checks its generator arguments and takes its categories from them.

    Returns:
        The prepared dataset.

    Raises:
        BenchmarkConfigError: Missing root, unknown categories, bad generator arguments.
    """
    from anomalib_promptmad.data.multiclass import MultiClassMVTecAD

    spec = config.datasets[index]
    key = f"datasets[{index}]"
    root = (spec.root if spec.root is not None else output_dir / "data" / spec.name).expanduser().resolve()
    if spec.type == "demo" and not root.exists():
        from anomalib_promptmad.data.demo import generate_demo_dataset

        arguments = dict(spec.generate)
        if spec.categories != "all":
            arguments.setdefault("categories", list(spec.categories))
        if not generate:
            return PreparedDataset(spec=spec, root=root, categories=_demo_categories(config, key, arguments))
        try:
            generate_demo_dataset(root, **arguments)
        except (TypeError, ValueError) as error:
            raise config.error(f"{key}.generate", f"cannot generate the demo dataset: {error}") from error
    elif not root.is_dir():
        where = (
            f" (relative paths start at {Path.cwd()})" if spec.root is not None and not spec.root.is_absolute() else ""
        )
        raise config.error(f"{key}.root", f"dataset folder '{spec.root}' does not exist{where}")
    try:
        categories = MultiClassMVTecAD(root=root, categories=_categories_argument(spec)).categories
    except (FileNotFoundError, ValueError) as error:
        raise config.error(f"{key}.categories", str(error)) from error
    return PreparedDataset(spec=spec, root=root, categories=tuple(categories))


def plan_jobs(config: BenchmarkConfig, output_dir: str | Path, generate: bool = True) -> list[JobSpec]:
    """Every job of the benchmark, in run order (dataset, setting, model, category).

    Args:
        config: The benchmark.
        output_dir: Run folder.
        generate: Generate missing demo datasets (``False``: plan only, write nothing; see :func:`prepare_dataset`).

    Returns:
        The jobs.

    Raises:
        BenchmarkConfigError: Anything a job would fail on that can be seen before it starts.
    """
    output_dir = Path(output_dir)
    datasets = [prepare_dataset(config, index, output_dir, generate) for index in range(len(config.datasets))]
    jobs: list[JobSpec] = []
    for dataset in datasets:
        demo_root = dataset.root if dataset.spec.type == "demo" else None
        resolved = [resolve_model(model, config, index, demo_root) for index, model in enumerate(config.models)]
        for setting in config.settings:
            for model, model_settings in zip(config.models, resolved, strict=True):
                if model.settings is not None and setting not in model.settings:
                    continue
                groups = [list(dataset.categories)] if setting == "unified" else [[c] for c in dataset.categories]
                for categories in groups:
                    parts = [dataset.spec.name, setting, model.name] + (categories if setting == "per_class" else [])
                    jobs.append(
                        JobSpec(
                            id="__".join(_safe(part) for part in parts),
                            dataset=dataset.spec.name,
                            dataset_type=dataset.spec.type,
                            root=str(dataset.root),
                            categories=categories,
                            setting=setting,
                            model=model.name,
                            model_settings=model_settings.to_dict(),
                            datamodule={**DATAMODULE_DEFAULTS, **dataset.spec.init_args},
                            seed=config.seed,
                            accelerator=config.accelerator,
                            threads=config.threads,
                            speed=asdict(config.speed),
                            figure=asdict(config.figure),
                            keep_checkpoints=config.keep_checkpoints,
                        )
                    )
    ids = [job.id for job in jobs]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise config.error("models", f"model/dataset names give clashing job folders {clashes}; rename them")
    return jobs


def _demo_categories(config: BenchmarkConfig, key: str, arguments: dict[str, Any]) -> tuple[str, ...]:
    """Categories a demo dataset would be generated with (sorted, as the datamodule lists them); checks arguments."""
    import inspect

    from anomalib_promptmad.data.demo import DEMO_CATEGORIES, generate_demo_dataset

    parameters = inspect.signature(generate_demo_dataset).parameters
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        problem = f"cannot generate the demo dataset: unknown arguments {unknown}; it takes {sorted(parameters)}"
        raise config.error(f"{key}.generate", problem)
    categories = list(arguments.get("categories", parameters["categories"].default))
    missing = [name for name in categories if name not in DEMO_CATEGORIES]
    if missing:
        available = sorted(DEMO_CATEGORIES)
        problem = f"cannot generate the demo dataset: unknown demo categories {missing}; available: {available}"
        raise config.error(f"{key}.generate", problem)
    return tuple(sorted(dict.fromkeys(categories)))


def _categories_argument(spec: DatasetSpec) -> list[str] | str:
    return "all" if spec.categories == "all" else list(spec.categories)


def _safe(part: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-") or "_"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
