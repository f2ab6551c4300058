# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""``promptmad-benchmark``: PromptMAD and anomalib's models side by side, from one YAML config.

    promptmad-benchmark --config configs/benchmark/mvtec_bottle_pill.yaml --output results/benchmark/mvtec
    promptmad-benchmark --config ... --list       # print the jobs and exit
    promptmad-benchmark --config ... --redo       # rerun jobs that already have a result
    promptmad-benchmark --config ... --models Padim,Patchcore,Stfpm   # only these models' jobs

``--models`` runs only the named models' jobs (names as in the config's ``models[].name``): the other jobs
are neither run nor deleted, and the report still holds every job of the config that has a finished result.

Exit status: 0 when every job has a result, 1 when any job failed (the report and the log name them
with the error's last line), 2 on a bad config or command line (nothing was run). Jobs left out by
``--models`` are not failures.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from anomalib_promptmad.benchmark.config import BenchmarkConfigError, load_config

__all__ = ["main"]


class _TqdmHandler(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    del frame
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="promptmad-benchmark",
        description="Train and test PromptMAD and anomalib's models on the same data, backbone weights, image "
        "size and metrics; write tables, charts and side-by-side anomaly maps.",
    )
    parser.add_argument("--config", required=True, type=Path, help="benchmark YAML (see configs/benchmark/)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="run folder (default: results/benchmark/<config name>); a rerun resumes it",
    )
    parser.add_argument("--redo", action="store_true", help="rerun jobs that already have a result")
    parser.add_argument("--list", action="store_true", help="check the config, print the jobs and exit")
    parser.add_argument(
        "--models",
        action="append",
        metavar="NAMES",
        help="run only these models' jobs: comma-separated names from the config's models (repeatable); the "
        "other jobs are left as they are (not run, not deleted) and the report still covers every finished job",
    )
    args = parser.parse_args(argv)

    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    package_logger = logging.getLogger("anomalib_promptmad.benchmark")
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    package_logger.propagate = False

    # `timeout`, `kill` and batch schedulers send SIGTERM: exit through the runner's clean-up, which stops the
    # running job (otherwise it would train on as an orphan; Lightning's own SIGTERM handler keeps it alive)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    output = args.output or Path("results") / "benchmark" / args.config.stem
    try:
        config = load_config(args.config)
        from anomalib_promptmad.benchmark.plan import plan_jobs, select_models

        try:
            models = select_models(config, args.models) if args.models is not None else None
        except ValueError as error:
            print(f"promptmad-benchmark: --models: {error}", file=sys.stderr)
            return 2
        if args.list:
            # --list runs nothing and writes nothing: a missing demo dataset is not generated
            for job in plan_jobs(config, output.resolve(), generate=False):
                if models is None or job.model in models:
                    print(f"{job.id}\t{job.setting}\t{job.model}\t{','.join(job.categories)}")
            return 0
        from anomalib_promptmad.benchmark.runner import run_benchmark

        result = run_benchmark(config, output, redo=args.redo, models=models)
    except BenchmarkConfigError as error:
        print(f"promptmad-benchmark: bad config: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promptmad-benchmark: interrupted; finished jobs are kept, rerun the command to resume", file=sys.stderr)
        return 130
    print(f"results: {result.report.markdown}")
    if not result.ok:
        print(f"{len(result.failed)} of {len(result.outcomes)} jobs failed:", file=sys.stderr)
        for outcome in result.failed:
            print(f"  {outcome.spec.id}: {outcome.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
