# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""One benchmark job, run in its own process: train, test, measure, write the result atomically.

    python -m anomalib_promptmad.benchmark.job RUN_DIR/jobs/JOB_ID

reads ``job.json`` from that folder and writes, in this order, each file atomically:

* ``per_category_metrics.csv`` (from :class:`~anomalib_promptmad.callbacks.PerCategoryMetrics`);
* ``maps.npz``: the fixed test images, their masks and this model's anomaly maps
  (:mod:`~anomalib_promptmad.benchmark.samples`);
* ``result.json``: metrics per category, cost, environment, and the job spec itself. It is written
  last, so its presence means the job finished. A Patchcore job whose spec asks for the exact fast coreset
  (``extra.coreset_selection``) also records each coreset selection it made (``coreset_selections``:
  implementation, points, selected, seconds). A PromptMAD job records the fusion rule calibration chose for
  each category (``fusion_rules``: category -> rule, e.g. ``"0.8 P + 0.2 M"``).

On an exception it writes ``error.json`` (type, message, traceback) and exits with status 1. A fresh
process per job gives every job a clean peak-memory figure and keeps one job's crash (including a
segmentation fault or the kernel's out-of-memory killer) from taking the other jobs down.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from anomalib_promptmad.infrastructure.atomic_write import write_json_atomic

__all__ = ["ERROR_FILE", "JOB_FILE", "MAPS_FILE", "RESULT_FILE", "main", "run_job"]

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
MAPS_FILE = "maps.npz"
_SPEED_IMAGES = 8


def _epoch_log() -> Any:
    """A callback printing one line per finished training epoch to the job's output (its ``log.txt``).

    Jobs train without a progress bar (a bar's redraws fill a log file with noise), so without this a long
    job showed nothing between "started" and its result.
    """
    from lightning.pytorch import Callback

    class EpochLog(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            del trainer, pl_module
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            del pl_module
            loss = trainer.callback_metrics.get("train_loss_epoch", trainer.callback_metrics.get("train_loss"))
            shown = f", train loss {float(loss):.4f}" if loss is not None else ""
            elapsed = time.perf_counter() - getattr(self, "_start", time.perf_counter())
            print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} done in {elapsed:.1f} s{shown}", flush=True)

    return EpochLog()


def run_job(spec: dict[str, Any], job_dir: str | Path) -> dict[str, Any]:
    """Train and test one model as ``spec`` says; write its files into ``job_dir``.

    Args:
        spec: A :class:`~anomalib_promptmad.benchmark.plan.JobSpec` as a dict.
        job_dir: The job's folder.

    Returns:
        The result written to ``result.json``.
    """
    import torch
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_promptmad.benchmark.coreset import coreset_selections
    from anomalib_promptmad.benchmark.metrics import quality_from_callback
    from anomalib_promptmad.benchmark.models import build_model
    from anomalib_promptmad.benchmark.samples import collect_samples, save_samples, select_samples
    from anomalib_promptmad.benchmark.throughput import images_per_second, peak_memory_mib
    from anomalib_promptmad.callbacks.per_category_metrics import PerCategoryMetrics
    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

    job_dir = Path(job_dir)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    seed_everything(int(spec["seed"]), workers=True)
    datamodule = MultiClassMVTecAD(root=spec["root"], categories=spec["categories"], **spec["datamodule"])
    coreset_selection = spec.get("extra", {}).get("coreset_selection")
    model = build_model(spec["model_settings"], coreset_selection=coreset_selection)

    # PromptMAD brings its own PerCategoryMetrics; a second one would compute everything twice
    own_callbacks = model.configure_callbacks()
    own_callbacks = own_callbacks if isinstance(own_callbacks, Sequence) else [own_callbacks]
    metrics_csv = job_dir / "per_category_metrics.csv"
    callbacks = [] if any(isinstance(c, PerCategoryMetrics) for c in own_callbacks) else [PerCategoryMetrics()]
    work_dir = job_dir / "work"
    engine = Engine(
        callbacks=[*callbacks, _epoch_log()],
        default_root_dir=work_dir,
        accelerator=spec["accelerator"],
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=int(spec["model_settings"]["max_epochs"]),
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=datamodule)
    fit_s = time.perf_counter() - start
    selections = coreset_selections(model)
    if coreset_selection is not None and not selections:
        # the job's settings say the exact fast coreset made the memory bank: never let that be untrue
        msg = f"coreset_selection {coreset_selection!r} was asked for, but the model selected no coreset through it"
        raise RuntimeError(msg)
    fusion_rules = _fusion_rules(model)
    start = time.perf_counter()
    engine.test(model=model, datamodule=datamodule)
    test_s = time.perf_counter() - start

    metric_callbacks = [c for c in engine.trainer.callbacks if isinstance(c, PerCategoryMetrics) and c.results]
    if not metric_callbacks:
        msg = "no per-category metrics were computed (the test set gave no predictions)"
        raise RuntimeError(msg)
    per_category = metric_callbacks[0]
    if per_category.csv_path is not None and per_category.csv_path.is_file():
        shutil.copyfile(per_category.csv_path, metrics_csv)

    test_data = datamodule.test_data
    samples = collect_samples(
        model,
        test_data,
        select_samples(test_data.samples, int(spec["figure"]["images_per_category"])),
        int(spec["figure"]["size"]),
    )
    save_samples(job_dir / MAPS_FILE, samples)

    speed_images = torch.stack([test_data[i].image.float() for i in range(min(_SPEED_IMAGES, len(test_data)))])
    throughput = {
        str(batch_size): images_per_second(
            model,
            speed_images,
            batch_size,
            warmup=int(spec["speed"]["warmup"]),
            min_iterations=int(spec["speed"]["min_iterations"]),
            min_seconds=float(spec["speed"]["min_seconds"]),
        )
        for batch_size in spec["speed"]["batch_sizes"]
    }
    result = {
        "job": spec,
        "metrics": quality_from_callback(per_category.results),
        "counts": {
            category: {"n_images": int(values["n_images"]), "n_anomalous": int(values["n_anomalous"])}
            for category, values in per_category.results.items()
            if category != "mean"
        },
        "scores_captured_raw": per_category.captured_raw_scores,
        "cost": {
            "fit_s": fit_s,
            "test_s": test_s,
            "images_per_s": throughput,
            "peak_memory_mib": peak_memory_mib(),
        },
        "samples_file": MAPS_FILE,
        **({"coreset_selections": selections} if selections is not None else {}),
        **({"fusion_rules": fusion_rules} if fusion_rules is not None else {}),
        "environment": _environment(torch),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if not spec.get("keep_checkpoints"):
        shutil.rmtree(work_dir, ignore_errors=True)
    write_json_atomic(job_dir / RESULT_FILE, result)
    return result


def _fusion_rules(model: Any) -> dict[str, str] | None:
    """PromptMAD's fusion rule per category as calibration set it; ``None`` for a model without them."""
    rules = getattr(getattr(model, "model", None), "fusion_rules", None)
    categories = getattr(model, "categories", None)
    if not rules or not categories or len(rules) != len(categories):
        return None
    return {category: str(rule) for category, rule in zip(categories, rules, strict=True)}


def _environment(torch: Any) -> dict[str, Any]:
    versions = {}
    for package in ("anomalib", "anomalib-promptmad", "torch", "torchvision", "timm", "lightning"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job whose folder is given; exit status 0 on success, 1 on failure."""
    import json

    parser = argparse.ArgumentParser(description="Run one benchmark job (started by promptmad-benchmark).")
    parser.add_argument("job_dir", type=Path, help=f"folder holding {JOB_FILE}")
    args = parser.parse_args(argv)
    try:
        spec = json.loads((args.job_dir / JOB_FILE).read_text(encoding="utf-8"))
        run_job(spec, args.job_dir)
    except BaseException as error:
        text = traceback.format_exc()
        sys.stderr.write(text)
        last_line = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
        write_json_atomic(
            args.job_dir / ERROR_FILE,
            {"type": type(error).__name__, "message": str(error), "last_line": last_line, "traceback": text},
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
