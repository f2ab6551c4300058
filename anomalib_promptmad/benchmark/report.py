# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Report of a benchmark run: ``settings.yaml``, ``results.csv``, ``results.md``, charts and map figures.

The report is rebuilt from the ``result.json`` files of the planned jobs each time the benchmark runs
(also when every job was skipped), so it always matches the run folder; every file is written
atomically. One row per (dataset, setting, model, category), plus a ``mean`` row per (dataset,
setting, model): the mean over categories of each quality metric. Cost columns of a category row are
those of the job that produced it (in the unified setting one job serves every category); in the
``mean`` row of the per-class setting, ``fit_s`` is the sum over the categories' jobs, throughput the
mean and peak memory the maximum. ``results.md`` names each dataset's root, or roots when its categories
come from several folders, and says how Patchcore's coreset was selected (and in how many seconds of its
fit time) wherever a job recorded it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anomalib_promptmad.benchmark.config import BenchmarkConfig
from anomalib_promptmad.benchmark.figures import bar_charts, map_figures
from anomalib_promptmad.benchmark.job import RESULT_FILE
from anomalib_promptmad.benchmark.metrics import QUALITY_METRICS
from anomalib_promptmad.benchmark.plan import JobSpec
from anomalib_promptmad.infrastructure.atomic_write import write_text_atomic

if TYPE_CHECKING:
    from anomalib_promptmad.benchmark.runner import JobOutcome

__all__ = ["MEAN", "ReportFiles", "build_rows", "write_report", "write_settings"]

MEAN = "mean"
SETTINGS_FILE = "settings.yaml"
_SETTING_TEXT = {
    "unified": "one model trained on all categories, evaluated per category",
    "per_class": "one model per category",
}
_HEADERS = {
    "image_AUROC": "image AUROC",
    "image_AP": "image AP",
    "pixel_AUROC": "pixel AUROC",
    "pixel_AP": "pixel AP",
    "AUPRO": "AUPRO",
    "image_F1Max": "image F1-max",
}


@dataclass(frozen=True)
class ReportFiles:
    """Files written by :func:`write_report`."""

    settings: Path
    csv: Path
    markdown: Path
    charts: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def write_settings(
    output_dir: Path, config: BenchmarkConfig, jobs: Sequence[JobSpec], models: Sequence[str] | None = None
) -> Path:
    """Write ``settings.yaml``: shared settings, environment and the exact spec of every planned job.

    Args:
        output_dir: Run folder.
        config: The benchmark.
        jobs: Every planned job (also those a model filter leaves out: the run folder holds them all).
        models: The model filter of this run (``None``: every model ran), stated as ``models_run``.

    Returns:
        The file written.
    """
    data = {
        "config_file": str(config.source) if config.source else None,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "shared": {
            "image_size": list(config.image_size),
            "backbone": config.backbone,
            "seed": config.seed,
            "accelerator": config.accelerator,
            "threads": config.threads,
            "settings": list(config.settings),
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "models_run": list(models) if models is not None else "all",
        "jobs": {job.id: job.to_dict() for job in jobs},
    }
    return write_text_atomic(output_dir / SETTINGS_FILE, yaml.safe_dump(data, sort_keys=False, width=120))


def build_rows(config: BenchmarkConfig, results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows from job results (see the module docstring).

    Args:
        config: The benchmark (row order: datasets, settings, models as configured).
        results: Loaded ``result.json`` files.

    Returns:
        Rows ordered by dataset, setting, category (``mean`` last), model.
    """
    batch_sizes = list(config.speed.batch_sizes)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        job = result["job"]
        groups.setdefault((job["dataset"], job["setting"], job["model"]), []).append(result)

    rows: list[dict[str, Any]] = []
    for dataset in config.datasets:
        for setting in config.settings:
            categories = sorted(
                {
                    category
                    for (d, s, _), group in groups.items()
                    if (d, s) == (dataset.name, setting)
                    for result in group
                    for category in result["metrics"]
                }
            )
            for category in [*categories, MEAN]:
                for model in config.models:
                    group = groups.get((dataset.name, setting, model.name))
                    if not group:
                        continue
                    row = _row(group, category, batch_sizes)
                    if row is not None:
                        rows.append({"dataset": dataset.name, "setting": setting, "model": model.name, **row})
    return rows


def _row(group: list[dict[str, Any]], category: str, batch_sizes: list[int]) -> dict[str, Any] | None:
    if category == MEAN:
        members = group
        quality = {
            name: _mean([r["metrics"][c].get(name) for r in group for c in r["metrics"]]) for name in QUALITY_METRICS
        }
        counts = [r["counts"][c] for r in group for c in r["counts"]]
    else:
        members = [r for r in group if category in r["metrics"]]
        if not members:
            return None
        quality = dict(members[0]["metrics"][category])
        counts = [members[0]["counts"][category]]
    costs = [r["cost"] for r in members]
    per_class = len(members) > 1
    row: dict[str, Any] = {"category": category, **quality}
    row["fit_s"] = sum(c["fit_s"] for c in costs) if per_class else costs[0]["fit_s"]
    for size in batch_sizes:
        row[f"images_per_s_b{size}"] = _mean([c["images_per_s"].get(str(size)) for c in costs])
    row["peak_memory_mib"] = max(c["peak_memory_mib"] for c in costs)
    row["n_images"] = sum(c["n_images"] for c in counts)
    row["n_anomalous"] = sum(c["n_anomalous"] for c in counts)
    row["jobs"] = " ".join(r["job"]["id"] for r in members)
    row["settings"] = _settings_text(members[0]["job"])
    return row


def write_report(output_dir: Path, config: BenchmarkConfig, outcomes: Sequence[JobOutcome]) -> ReportFiles:
    """Write every report file from the results of ``outcomes`` (failed jobs are listed, not tabled).

    Args:
        output_dir: Run folder.
        config: The benchmark.
        outcomes: One per planned job; those with a finished result (run now or earlier, also jobs a model
            filter left out) fill the tables, failed and not-selected ones are listed.

    Returns:
        The files written.
    """
    results = [
        json.loads((outcome.job_dir / RESULT_FILE).read_text(encoding="utf-8"))
        for outcome in outcomes
        if outcome.has_result
    ]
    rows = build_rows(config, results)
    columns = _columns(config)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    csv_path = write_text_atomic(output_dir / "results.csv", buffer.getvalue())

    models = [model.name for model in config.models]
    charts = bar_charts(rows, models, output_dir / "charts")
    figures = map_figures(results, models, output_dir)
    markdown = write_text_atomic(
        output_dir / "results.md", _markdown(config, rows, outcomes, results, charts, figures, output_dir)
    )
    return ReportFiles(
        settings=output_dir / SETTINGS_FILE, csv=csv_path, markdown=markdown, charts=charts, figures=figures
    )


def _columns(config: BenchmarkConfig) -> list[str]:
    speed = [f"images_per_s_b{size}" for size in config.speed.batch_sizes]
    return [
        "dataset",
        "setting",
        "model",
        "category",
        *QUALITY_METRICS,
        "fit_s",
        *speed,
        "peak_memory_mib",
        "n_images",
        "n_anomalous",
        "jobs",
        "settings",
    ]


def _markdown(
    config: BenchmarkConfig,
    rows: list[dict[str, Any]],
    outcomes: Sequence[JobOutcome],
    results: Sequence[dict[str, Any]],
    charts: list[Path],
    figures: list[Path],
    output_dir: Path,
) -> str:
    lines = ["# Benchmark results", ""]
    source = f"`{config.source}`" if config.source else "an in-memory config"
    lines.append(
        f"Config {source}; image size {config.image_size[0]}x{config.image_size[1]}, backbone "
        f"`{config.backbone}` wherever the architecture takes one, seed {config.seed}. Exact settings of every "
        f"job: `{SETTINGS_FILE}` and the `settings` column of `results.csv`."
    )
    if results:
        environment = results[0].get("environment", {})
        versions = ", ".join(f"{k} {v}" for k, v in environment.get("versions", {}).items() if v)
        lines.append(
            f"Machine: {environment.get('platform')}, {environment.get('cpu_count')} CPUs, "
            f"{environment.get('torch_threads')} torch threads, GPU: {environment.get('cuda') or 'none'}; {versions}."
        )
    lines.append("")
    lines += _dataset_lines(outcomes)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        lines += [f"## Failed jobs ({len(failed)} of {len(outcomes)})", ""]
        for outcome in failed:
            log = (outcome.job_dir / "log.txt").relative_to(output_dir)
            lines.append(f"- `{outcome.spec.id}`: {outcome.error} (full output: `{log}`)")
        lines.append("")
    pending = [outcome for outcome in outcomes if outcome.ok and not outcome.has_result]
    if pending:
        lines += [
            f"## Jobs without a result ({len(pending)} of {len(outcomes)})",
            "",
            "Not selected to run (`--models`) and not finished in an earlier run with their current settings:",
            "",
        ]
        lines += [f"- `{outcome.spec.id}`" for outcome in pending]
        lines.append("")
    if not failed and not pending:
        lines += [f"All {len(outcomes)} jobs finished.", ""]

    speed = [f"images_per_s_b{size}" for size in config.speed.batch_sizes]
    for dataset in config.datasets:
        for setting in config.settings:
            block = [r for r in rows if r["dataset"] == dataset.name and r["setting"] == setting]
            if not block:
                continue
            lines += [f"## {dataset.name}, {setting} ({_SETTING_TEXT[setting]})", ""]
            lines += _quality_table(block)
            lines += ["", "Cost (per model; fit time of the per-class setting summed over its categories):", ""]
            header = [
                "model",
                "fit (s)",
                *[f"images/s, batch {s.rsplit('b', 1)[1]}" for s in speed],
                "peak memory (MiB)",
            ]
            lines += _table(
                header,
                (
                    [
                        row["model"],
                        f"{row['fit_s']:.1f}",
                        *[_number(row[s], 2) for s in speed],
                        f"{row['peak_memory_mib']:.0f}",
                    ]
                    for row in block
                    if row["category"] == MEAN
                ),
            )
            lines.append("")

    lines += _coreset_lines(results)
    lines += _fusion_rule_lines(results)
    lines += ["## Settings", "", "| model | exact settings |", "|---|---|"]
    seen: set[str] = set()
    for row in rows:
        if row["model"] not in seen:
            seen.add(row["model"])
            lines.append(f"| {row['model']} | `{row['settings']}` |")
    lines.append("")
    if charts:
        lines += ["## Charts", ""]
        lines += [f"![{chart.stem}]({chart.relative_to(output_dir).as_posix()})" for chart in charts]
        lines.append("")
    if figures:
        lines += [
            "## Anomaly maps",
            "",
            "Columns: image, ground truth, one heat map per model (post-processed: 0.5 is the model's own "
            "validation threshold).",
            "",
        ]
        lines += [f"![{figure.stem}]({figure.relative_to(output_dir).as_posix()})" for figure in figures]
        lines.append("")
    return "\n".join(lines)


def _root_text(root: str | Sequence[str]) -> str:
    """A job's dataset root(s) for the report: one path, or several joined with ``" + "``."""
    return root if isinstance(root, str) else " + ".join(root)


def _dataset_lines(outcomes: Sequence[JobOutcome]) -> list[str]:
    """One line per dataset: its root (or roots) and categories, as its jobs were planned."""
    lines = []
    for name in dict.fromkeys(outcome.spec.dataset for outcome in outcomes):
        specs = [outcome.spec for outcome in outcomes if outcome.spec.dataset == name]
        root = specs[0].root
        label = "root" if isinstance(root, str) else f"{len(root)} roots"
        categories = sorted({category for spec in specs for category in spec.categories})
        lines.append(f"- Dataset `{name}`: {label} `{_root_text(root)}`; categories {', '.join(categories)}.")
    return [*lines, ""] if lines else []


def _coreset_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """A section on the coreset selections that jobs recorded (Patchcore with the exact fast coreset)."""
    return _section(
        "Coreset selection",
        "`exact_fast`: the benchmark's exact greedy k-center selection "
        "(`anomalib_promptmad.matching.greedy_coreset_indices`), which selects the indices anomalib's "
        "`KCenterGreedy` selects (the same memory bank) in far less time; `anomalib`: anomalib's own (an "
        "embedding on an accelerator). The seconds are part of the fit time. Patchcore jobs not listed here used "
        "anomalib's own selection (`exact_fast_coreset: false`).",
        ["job", "selection", "patches", "selected", "seconds"],
        [
            [
                f"`{result['job']['id']}`",
                entry["implementation"],
                str(entry["points"]),
                f"{entry['selected']} ({entry['sampling_ratio']:g})",
                f"{entry['seconds']:.1f}",
            ]
            for result in results
            for entry in result.get("coreset_selections") or []
        ],
    )


def _fusion_rule_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """A section on the fusion rule each PromptMAD job's calibration chose per category."""
    return _section(
        "Fusion rules",
        "PromptMAD's anomaly map per category, as calibration chose it on the validation split: `D` the scaled "
        "reconstruction distance, `P` the segmentor's probability, `M` the scaled prompt-matching distance.",
        ["job", "category", "rule"],
        [
            [f"`{result['job']['id']}`", category, f"`{rule}`"]
            for result in results
            for category, rule in (result.get("fusion_rules") or {}).items()
        ],
    )


def _section(title: str, introduction: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A report section: its title, an introduction and a table; nothing where the table has no row."""
    if not rows:
        return []
    return [f"## {title}", "", introduction, "", *_table(header, rows), ""]


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table: the header, its separator and one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def _quality_table(block: list[dict[str, Any]]) -> list[str]:
    rows = []
    for category in dict.fromkeys(r["category"] for r in block):
        group = [r for r in block if r["category"] == category]
        best = {name: max((r[name] for r in group if r[name] is not None), default=None) for name in QUALITY_METRICS}
        for row in group:
            cells = [f"**{category}**" if category == MEAN else category, row["model"]]
            for name in QUALITY_METRICS:
                text = _number(row[name], 3)
                bold = row[name] is not None and len(group) > 1 and row[name] == best[name]
                cells.append(f"**{text}**" if bold else text)
            rows.append(cells)
    return _table(["category", "model", *_HEADERS.values()], rows)


def _settings_text(job: dict[str, Any]) -> str:
    """Compact exact settings of a job's model: class, init arguments, trainer epochs, pre-processing."""
    model = job["model_settings"]
    data = {"class": model["class_path"], "init_args": model["init_args"], "trainer_max_epochs": model["max_epochs"]}
    if model.get("pre_processor"):
        data["pre_processor"] = model["pre_processor"]
    data.update(job.get("extra") or {})
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return sum(present) / len(present) if present else None


def _number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
