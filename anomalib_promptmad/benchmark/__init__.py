# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Side-by-side benchmark of PromptMAD and anomalib's built-in models.

One YAML config names models x datasets x settings (``unified``: one model for all chosen categories,
evaluated per category; ``per_class``: one model per category). Every job runs in a fresh process and
writes its result atomically; the run folder gets ``results.csv``, ``results.md``, a bar chart per metric
and side-by-side anomaly maps. Console command: ``promptmad-benchmark --config FILE``.

A dataset's ``root`` may list several folders whose categories form one dataset. ``--models A,B``
(``run_benchmark(..., models=[...])``) runs only those models' jobs and leaves the others as they are; the
report still covers every finished job. Patchcore selects its coreset with the exact fast greedy selection
(the memory bank of anomalib's ``KCenterGreedy``, in far less time; :mod:`.coreset`) unless the config sets
``exact_fast_coreset: false``.

Public names resolve lazily (PEP 562): the package is cheap to import until a benchmark runs.

Example:
    >>> from anomalib_promptmad.benchmark import load_config, run_benchmark
    >>> result = run_benchmark(load_config("configs/benchmark/demo_tiny.yaml"), "results/bench")  # doctest: +SKIP
    >>> result.ok, result.report.markdown  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anomalib_promptmad.infrastructure.lazy_exports import lazy_exports

__all__ = [
    "BenchmarkConfig",
    "BenchmarkConfigError",
    "BenchmarkResult",
    "DatasetSpec",
    "JobOutcome",
    "JobSpec",
    "ModelSpec",
    "load_config",
    "plan_jobs",
    "run_benchmark",
]

_LAZY_EXPORTS: dict[str, str] = {
    "BenchmarkConfig": "anomalib_promptmad.benchmark.config",
    "BenchmarkConfigError": "anomalib_promptmad.benchmark.config",
    "DatasetSpec": "anomalib_promptmad.benchmark.config",
    "ModelSpec": "anomalib_promptmad.benchmark.config",
    "load_config": "anomalib_promptmad.benchmark.config",
    "JobSpec": "anomalib_promptmad.benchmark.plan",
    "plan_jobs": "anomalib_promptmad.benchmark.plan",
    "BenchmarkResult": "anomalib_promptmad.benchmark.runner",
    "JobOutcome": "anomalib_promptmad.benchmark.runner",
    "run_benchmark": "anomalib_promptmad.benchmark.runner",
}

if TYPE_CHECKING:
    from anomalib_promptmad.benchmark.config import (
        BenchmarkConfig,
        BenchmarkConfigError,
        DatasetSpec,
        ModelSpec,
        load_config,
    )
    from anomalib_promptmad.benchmark.plan import JobSpec, plan_jobs
    from anomalib_promptmad.benchmark.runner import BenchmarkResult, JobOutcome, run_benchmark


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_EXPORTS, __all__)
