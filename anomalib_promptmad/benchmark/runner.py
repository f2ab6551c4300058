# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Run a benchmark: plan the jobs, run each in a fresh process, then write the report.

Run folder layout::

    <output_dir>/settings.yaml             exact settings of every job, environment
    <output_dir>/results.csv, results.md   the tables (see report.py)
    <output_dir>/charts/<metric>.png       bar charts
    <output_dir>/maps_<dataset>_<setting>.png   side-by-side anomaly maps
    <output_dir>/jobs/<job id>/            job.json, log.txt, result.json | error.json, maps.npz

Resuming: a job whose ``result.json`` exists and was made with the same settings (its ``job`` entry equals
the planned spec) is skipped unless ``redo``; a job whose settings changed, or that failed, runs again.
``result.json`` is written atomically and last, so an interrupted job leaves no result that could be
mistaken for a finished one.

Model filter: ``models=[...]`` (``promptmad-benchmark --models Padim,Patchcore``) runs only those models'
jobs. The other jobs are left as they are, neither run nor deleted; the report still covers every planned
job that has a finished result with its current settings, so baselines can run while another model's
settings are still being decided, and the report fills up as each part is run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from anomalib_promptmad.benchmark.config import BenchmarkConfig, load_config
from anomalib_promptmad.benchmark.job import ERROR_FILE, JOB_FILE, MAPS_FILE, RESULT_FILE
from anomalib_promptmad.benchmark.plan import JobSpec, plan_jobs, select_models
from anomalib_promptmad.benchmark.report import ReportFiles, write_report, write_settings
from anomalib_promptmad.infrastructure.atomic_write import write_json_atomic

__all__ = ["BenchmarkResult", "JobOutcome", "run_benchmark"]

logger = logging.getLogger(__name__)

LOG_FILE = "log.txt"
_STATUS_DONE, _STATUS_SKIPPED, _STATUS_FAILED = "done", "skipped", "failed"
# left out by the model filter and without a finished result: neither run nor deleted, not a failure
_STATUS_NOT_SELECTED = "not_selected"


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one job in this run.

    Attributes:
        spec: The job.
        status: ``done`` (ran now), ``skipped`` (finished in an earlier run; also a job left out by the model
            filter that has a result), ``failed``, or ``not_selected`` (left out by the model filter and without
            a result with its current settings: not run, nothing deleted).
        elapsed_s: Wall time of the job's process in this run (0 when skipped).
        error: The error's last line, for a failed job.
        job_dir: The job's folder (``log.txt`` holds its full output).
    """

    spec: JobSpec
    status: str
    elapsed_s: float
    job_dir: Path
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the job did not fail (it has a result, or was not selected to run)."""
        return self.status != _STATUS_FAILED

    @property
    def has_result(self) -> bool:
        """Whether the job has a finished result with its current settings (it is in the report's tables)."""
        return self.status in (_STATUS_DONE, _STATUS_SKIPPED)


@dataclass(frozen=True)
class BenchmarkResult:
    """A finished benchmark run.

    Attributes:
        output_dir: The run folder.
        outcomes: One per planned job, in run order.
        report: The files written.
    """

    output_dir: Path
    outcomes: list[JobOutcome]
    report: ReportFiles = field(repr=False)

    @property
    def failed(self) -> list[JobOutcome]:
        """The jobs that failed."""
        return [outcome for outcome in self.outcomes if not outcome.ok]

    @property
    def ok(self) -> bool:
        """Whether no job failed (with a model filter, the jobs left out do not count as failures)."""
        return not self.failed


def run_benchmark(
    config: BenchmarkConfig | str | Path,
    output_dir: str | Path,
    redo: bool = False,
    python: str | Path = sys.executable,
    models: Iterable[str] | None = None,
) -> BenchmarkResult:
    """Run every job of ``config`` that has no result yet and write the report into ``output_dir``.

    Args:
        config: The benchmark, or its YAML file.
        output_dir: Run folder (created).
        redo: Rerun jobs that already have a result with the same settings (of the selected models only).
        python: Interpreter that runs the jobs.
        models: Run only the jobs of these models (names as in the config's ``models[].name``); the other
            jobs are neither run nor deleted, and those with a finished result are still in the report.
            ``None``: every model.

    Returns:
        The outcomes and report files. Check :attr:`BenchmarkResult.ok`: failed jobs do not raise.

    Raises:
        BenchmarkConfigError: A config problem, found before any job starts.
        ValueError: ``models`` names a model the config does not have (also before any job starts).
    """
    if not isinstance(config, BenchmarkConfig):
        config = load_config(config)
    selected = select_models(config, models) if models is not None else None
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(config, output_dir)
    write_settings(output_dir, config, jobs, selected)
    to_run = [job for job in jobs if selected is None or job.model in selected]
    if selected is None:
        logger.info("Benchmark: %d jobs, run folder %s", len(jobs), output_dir)
    else:
        logger.info(
            "Benchmark: %d of %d jobs (models %s; the other jobs are left as they are), run folder %s",
            len(to_run),
            len(jobs),
            ", ".join(selected),
            output_dir,
        )

    outcomes: list[JobOutcome] = []
    with tqdm(total=len(to_run), desc="benchmark", unit="job", disable=None, dynamic_ncols=True) as progress:
        number = 0
        for job in jobs:
            job_dir = output_dir / "jobs" / job.id
            if selected is not None and job.model not in selected:
                # neither run nor deleted: its result, if it has one with these settings, is still reported
                status = _STATUS_SKIPPED if _finished(job_dir, job) else _STATUS_NOT_SELECTED
                outcomes.append(JobOutcome(job, status, 0.0, job_dir))
                continue
            number += 1
            prefix = f"[{number}/{len(to_run)}] {job.id}"
            if not redo and _finished(job_dir, job):
                logger.info("%s: skipped, finished in an earlier run (--redo runs it again)", prefix)
                outcomes.append(JobOutcome(job, _STATUS_SKIPPED, 0.0, job_dir))
            else:
                progress.set_postfix_str(job.id)
                logger.info("%s: started (its output: %s)", prefix, job_dir / LOG_FILE)
                outcome = _run_job(job, job_dir, python, config.job_timeout_s)
                if outcome.ok:
                    logger.info("%s: done in %.1f s", prefix, outcome.elapsed_s)
                else:
                    logger.error(
                        "%s: FAILED after %.1f s: %s (log: %s)",
                        prefix,
                        outcome.elapsed_s,
                        outcome.error,
                        job_dir / LOG_FILE,
                    )
                outcomes.append(outcome)
            progress.update(1)

    report = write_report(output_dir, config, outcomes)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    if failed:
        logger.error("%d of %d jobs failed: %s", len(failed), len(to_run), ", ".join(o.spec.id for o in failed))
    logger.info("Report: %s", report.markdown)
    return BenchmarkResult(output_dir=output_dir, outcomes=outcomes, report=report)


def _finished(job_dir: Path, job: JobSpec) -> bool:
    """Whether the job has a complete result made with exactly these settings."""
    try:
        result = json.loads((job_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return result.get("job") == job.to_dict() and (job_dir / MAPS_FILE).is_file()


def _run_job(job: JobSpec, job_dir: Path, python: str | Path, timeout_s: float | None) -> JobOutcome:
    """Run one job in a fresh process; its output goes to ``log.txt``."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in (RESULT_FILE, ERROR_FILE, MAPS_FILE):
        (job_dir / stale).unlink(missing_ok=True)
    write_json_atomic(job_dir / JOB_FILE, job.to_dict())
    command = [str(python), "-m", "anomalib_promptmad.benchmark.job", str(job_dir)]
    start = time.perf_counter()
    error: str | None = None
    with (job_dir / LOG_FILE).open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_job_environment())
        try:
            return_code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            return_code = None
            error = f"timed out after {timeout_s:g} s (job_timeout_s)"
        except BaseException:
            # Ctrl-C: do not leave an orphan training process behind
            _stop(process)
            raise
    elapsed = time.perf_counter() - start
    if return_code == 0 and (job_dir / RESULT_FILE).is_file():
        return JobOutcome(job, _STATUS_DONE, elapsed, job_dir)
    if error is None:
        error = _failure_reason(job_dir, return_code)
    if not (job_dir / ERROR_FILE).is_file():
        # killed or crashed before the job could say why: record what the parent saw
        write_json_atomic(job_dir / ERROR_FILE, {"type": "ProcessFailure", "message": error, "last_line": error})
    return JobOutcome(job, _STATUS_FAILED, elapsed, job_dir, error=error)


def _failure_reason(job_dir: Path, return_code: int | None) -> str:
    """The error's last line: from ``error.json`` when the job wrote one, else from its log."""
    try:
        return str(json.loads((job_dir / ERROR_FILE).read_text(encoding="utf-8"))["last_line"])
    except (OSError, ValueError, KeyError):
        pass
    lines = [line for line in (job_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace").splitlines() if line]
    if return_code is not None and return_code < 0:
        name = signal.Signals(-return_code).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        reason = f"killed by {name}{hint}"
    else:
        reason = f"exit status {return_code} without a result"
    return f"{reason}; last output: {lines[-1]}" if lines else reason


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _job_environment() -> dict[str, str]:
    """This process's environment, with this very package first on the job's import path."""
    # An editable install can point elsewhere (or nowhere); the job must run the code that planned it.
    package_parent = str(Path(__file__).resolve().parents[2])
    paths = [package_parent, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
