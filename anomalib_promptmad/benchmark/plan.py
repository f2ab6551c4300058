# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Expand a benchmark config into jobs, checking everything a job would trip over later.

One job = one model trained and tested once:

* ``unified``: one job per (dataset, model), trained on all chosen categories, evaluated per category;
* ``per_class``: one job per (dataset, model, category), trained and tested on that category only.

Planning resolves every model's exact arguments (:func:`~anomalib_promptmad.benchmark.models.resolve_model`),
checks each dataset root and its categories, and generates demo datasets that do not exist yet, so a bad
config fails in seconds, not after the first hour of training. A dataset with several roots is one dataset:
its categories are looked up in every root (each must live in exactly one), and its jobs carry the list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anomalib_promptmad.benchmark.config import BenchmarkConfig, DatasetSpec
from anomalib_promptmad.benchmark.coreset import CORESET_SELECTION
from anomalib_promptmad.benchmark.models import resolve_model, selects_coreset

__all__ = ["DATAMODULE_DEFAULTS", "JobSpec", "PreparedDataset", "plan_jobs", "prepare_dataset", "select_models"]

# Explicit so that the settings of a run state them: anomalib's default of 8 workers oversubscribes small machines.
DATAMODULE_DEFAULTS: dict[str, Any] = {"train_batch_size": 8, "eval_batch_size": 8, "num_workers": 0}


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset ready for jobs: absolute roots (one or more) and the checked, sorted categories."""

    spec: DatasetSpec
    roots: tuple[Path, ...]
    categories: tuple[str, ...]

    @property
    def root(self) -> Path:
        """The first root (the only one of a single-root or demo dataset)."""
        return self.roots[0]

    @property
    def job_root(self) -> str | list[str]:
        """The roots as a job states them: a string for one root (as before multi-root datasets), else a list."""
        return str(self.roots[0]) if len(self.roots) == 1 else [str(root) for root in self.roots]


@dataclass(frozen=True)
class JobSpec:
    """Everything one job runs with (its ``job.json``); equal specs mean a finished job can be reused.

    Attributes:
        id: Folder name of the job (``<dataset>__<setting>__<model>[__<category>]``).
        dataset: Dataset label.
        dataset_type: ``mvtec`` or ``demo``.
        root: Absolute dataset root; for a dataset with several roots, the list of them (a single root stays
            a string, so that jobs of single-root datasets keep their settings and their finished results).
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
        extra: Settings that only some jobs have, kept out of the other fields so that adding one does not
            change (and rerun) the jobs it does not concern: ``coreset_selection: exact_fast`` for Patchcore
            when the config's ``exact_fast_coreset`` is on (:mod:`~anomalib_promptmad.benchmark.coreset`).
    """

    id: str
    dataset: str
    dataset_type: str
    root: str | list[str]
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
        BenchmarkConfigError: Missing root (the message names the key and the root), unknown categories, a
            category found under two roots, bad generator arguments.
    """
    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

    spec = config.datasets[index]
    key = f"datasets[{index}]"
    if len(spec.roots) > 1:
        return _prepare_roots(config, index)
    root = (spec.roots[0] if spec.roots else output_dir / "data" / spec.name).expanduser().resolve()
    if spec.type == "demo" and not root.exists():
        from anomalib_promptmad.data.demo import generate_demo_dataset

        arguments = dict(spec.generate)
        if spec.categories != "all":
            arguments.setdefault("categories", list(spec.categories))
        if not generate:
            return PreparedDataset(spec=spec, roots=(root,), categories=_demo_categories(config, key, arguments))
        try:
            generate_demo_dataset(root, **arguments)
        except (TypeError, ValueError) as error:
            raise config.error(f"{key}.generate", f"cannot generate the demo dataset: {error}") from error
    elif not root.is_dir():
        raise config.error(f"{key}.root", _missing_root(spec.roots[0] if spec.roots else root))
    try:
        categories = MultiClassMVTecAD(root=root, categories=_categories_argument(spec)).categories
    except (FileNotFoundError, ValueError) as error:
        raise config.error(f"{key}.categories", str(error)) from error
    return PreparedDataset(spec=spec, roots=(root,), categories=tuple(categories))


def _prepare_roots(config: BenchmarkConfig, index: int) -> PreparedDataset:
    """Check a dataset with several roots: each root exists, each category lives in exactly one of them."""
    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

    spec = config.datasets[index]
    key = f"datasets[{index}].root"
    roots = tuple(path.expanduser().resolve() for path in spec.roots)
    for position, (given, root) in enumerate(zip(spec.roots, roots, strict=True)):
        if not root.is_dir():
            raise config.error(f"{key}[{position}]", _missing_root(given))
        if root in roots[:position]:
            # two spellings of one folder: every category would be found twice
            first = roots.index(root)
            raise config.error(f"{key}[{position}]", f"'{given}' is the same folder as {key}[{first}]")
    try:
        datamodule = MultiClassMVTecAD(root=list(roots), categories=_categories_argument(spec))
    except (FileNotFoundError, ValueError) as error:
        # a category under two roots is a problem of the roots; an unknown one, of the category list
        where = key if "more than one root" in str(error) else f"datasets[{index}].categories"
        raise config.error(where, str(error)) from error
    return PreparedDataset(spec=spec, roots=roots, categories=tuple(datamodule.categories))


def _missing_root(given: Path) -> str:
    where = f" (relative paths start at {Path.cwd()})" if not given.is_absolute() else ""
    return f"dataset folder '{given}' does not exist{where}"


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
        extras = [_extra(config, model.class_path) for model in resolved]
        for setting in config.settings:
            for model, model_settings, extra in zip(config.models, resolved, extras, strict=True):
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
                            root=dataset.job_root,
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
                            extra=dict(extra),
                        )
                    )
    ids = [job.id for job in jobs]
    clashes = sorted({i for i in ids if ids.count(i) > 1})
    if clashes:
        raise config.error("models", f"model/dataset names give clashing job folders {clashes}; rename them")
    return jobs


def select_models(config: BenchmarkConfig, names: Iterable[str]) -> tuple[str, ...]:
    """Check a model filter against the config's model names.

    Args:
        config: The benchmark.
        names: Model names; an entry that is not a model's name is read as comma-separated names
            (``"Padim,Patchcore"``), so that names holding a comma can still be given whole.

    Returns:
        The selected names, in the config's model order.

    Raises:
        ValueError: An unknown name, or none at all (the message lists the config's models).
    """
    available = [model.name for model in config.models]
    wanted: list[str] = []
    for entry in names:
        wanted.extend([entry] if entry in available else [part.strip() for part in entry.split(",") if part.strip()])
    unknown = [name for name in wanted if name not in available]
    if unknown or not wanted:
        problem = f"no model named {', '.join(map(repr, unknown))}" if unknown else "no model name given"
        msg = f"{problem}; the config's models: {', '.join(available)}"
        raise ValueError(msg)
    return tuple(name for name in available if name in wanted)


def _extra(config: BenchmarkConfig, class_path: str) -> dict[str, Any]:
    """The job settings only some models have (see :attr:`JobSpec.extra`)."""
    if config.exact_fast_coreset and selects_coreset(class_path):
        return {"coreset_selection": CORESET_SELECTION}
    return {}


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
