# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Patchcore in benchmark jobs: the exact fast coreset gives the memory bank anomalib's KCenterGreedy gives.

Each comparison seeds numpy and torch the same way before both selections: anomalib's projection draws from
numpy's global state, its start point from torch's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from anomalib.models.components import KCenterGreedy
from anomalib.models.image.patchcore import torch_model as patchcore_torch_model

from anomalib_promptmad.benchmark.config import parse_config
from anomalib_promptmad.benchmark.coreset import ExactFastKCenterGreedy, coreset_selections, use_exact_fast_coreset
from anomalib_promptmad.benchmark.models import build_model
from anomalib_promptmad.benchmark.plan import JobSpec, plan_jobs


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _clustered(count: int, dim: int, seed: int) -> torch.Tensor:
    """Points in tight clusters, as patch features are (the fast selection then really skips work)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, dim, generator=generator) * 4
    return centres[torch.randint(10, (count,), generator=generator)] + torch.randn(count, dim, generator=generator)


def _config(tmp_path: Path, exact_fast_coreset: bool = True, **patchcore: Any) -> dict[str, Any]:
    return {
        "image_size": 64,
        "backbone": "tf_efficientnet_lite0",
        "seed": 3,
        "exact_fast_coreset": exact_fast_coreset,
        "settings": ["unified"],
        "datasets": [
            {
                "name": "demo",
                "type": "demo",
                "root": str(tmp_path / "demo"),
                "categories": ["disc"],
                "generate": {"image_size": 32, "n_train": 8, "n_test_good": 2, "n_test_defect": 1},
            }
        ],
        "models": [
            {"name": "Patchcore", "class_path": "Patchcore", **patchcore},
            {"name": "Padim", "class_path": "Padim"},
        ],
        "speed": {"batch_sizes": [1], "warmup": 0, "min_iterations": 1, "min_seconds": 0.0},
        "figure": {"images_per_category": 1, "size": 32},
    }


def _patchcore_job(tmp_path: Path, exact_fast_coreset: bool = True) -> JobSpec:
    jobs = plan_jobs(parse_config(_config(tmp_path, exact_fast_coreset), source="inline"), tmp_path / "run")
    return next(job for job in jobs if job.model == "Patchcore")


def test_drop_in_selects_anomalibs_indices_and_records_it() -> None:
    """ExactFastKCenterGreedy returns KCenterGreedy's coreset under the same seed, and says what it did."""
    embedding = _clustered(1200, 40, seed=1)
    _seed(5)
    expected = KCenterGreedy(embedding=embedding, sampling_ratio=0.1).sample_coreset()
    record: list[dict[str, Any]] = []
    _seed(5)
    coreset = ExactFastKCenterGreedy(embedding=embedding, sampling_ratio=0.1, record=record).sample_coreset()
    assert coreset.shape == (120, 40)
    assert torch.equal(coreset, expected)
    assert [{k: v for k, v in entry.items() if k != "seconds"} for entry in record] == [
        {"implementation": "exact_fast", "points": 1200, "selected": 120, "sampling_ratio": 0.1}
    ]


def test_plan_states_the_coreset_in_patchcore_jobs_only(tmp_path: Path) -> None:
    """Patchcore jobs say they use the exact fast coreset at anomalib's ratio 0.1; others and 'off' say nothing."""
    jobs = {job.model: job for job in plan_jobs(parse_config(_config(tmp_path)), tmp_path / "run", generate=False)}
    assert jobs["Patchcore"].extra == {"coreset_selection": "exact_fast"}
    assert jobs["Patchcore"].model_settings["init_args"]["coreset_sampling_ratio"] == 0.1
    assert jobs["Padim"].extra == {}
    off = plan_jobs(parse_config(_config(tmp_path, exact_fast_coreset=False)), tmp_path / "run", generate=False)
    assert [job.extra for job in off] == [{}, {}]


def test_model_building_path_gives_anomalibs_memory_bank(tmp_path: Path) -> None:
    """build_model's Patchcore subsamples a memory bank to exactly what anomalib's own Patchcore keeps."""
    job = _patchcore_job(tmp_path)
    settings = {**job.model_settings, "init_args": {**job.model_settings["init_args"], "pre_trained": False}}
    fast = build_model(settings, coreset_selection=job.extra["coreset_selection"])
    reference = build_model(settings)
    embedding = _clustered(1500, 48, seed=2)
    banks = []
    for model in (fast, reference):
        model.model.embedding_store.extend(embedding.clone().split(500))  # as training batches leave it
        _seed(11)
        model.fit()  # anomalib's Patchcore.fit: subsample_embedding(coreset_sampling_ratio)
        banks.append(model.model.memory_bank)
    assert banks[0].shape == (150, 48)
    assert torch.equal(banks[0], banks[1])
    assert [entry["implementation"] for entry in coreset_selections(fast)] == ["exact_fast"]
    assert coreset_selections(reference) is None  # built without it: anomalib's selection, untouched


def test_nothing_is_replaced_outside_the_one_models_selection(tmp_path: Path) -> None:
    """Importing the benchmark or wrapping one model leaves anomalib's KCenterGreedy in place for everyone else."""
    import anomalib_promptmad.benchmark.job
    import anomalib_promptmad.benchmark.runner

    del anomalib_promptmad  # imported for the check below: no benchmark module replaces anything on import

    assert patchcore_torch_model.KCenterGreedy is KCenterGreedy
    job = _patchcore_job(tmp_path)
    settings = {**job.model_settings, "init_args": {**job.model_settings["init_args"], "pre_trained": False}}
    fast = build_model(settings, coreset_selection="exact_fast")
    other = build_model(settings)
    assert patchcore_torch_model.KCenterGreedy is KCenterGreedy
    assert other.model.subsample_embedding.__func__ is patchcore_torch_model.PatchcoreModel.subsample_embedding
    fast.model.embedding_store.append(_clustered(300, 16, seed=3))
    fast.model.subsample_embedding(0.1)
    assert patchcore_torch_model.KCenterGreedy is KCenterGreedy
    assert use_exact_fast_coreset(fast) is coreset_selections(fast)  # applying it twice wraps once
    with pytest.raises(TypeError, match="Patchcore"):
        use_exact_fast_coreset(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_fitted_job_model_ends_with_anomalibs_memory_bank(tmp_path: Path) -> None:
    """Fitted with the Engine on real images (packaged weights): the same memory bank as anomalib's selection."""
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_promptmad.data.mvtec import MultiClassMVTecAD

    job = _patchcore_job(tmp_path)
    banks, models = [], []
    for name, selection in (("fast", "exact_fast"), ("anomalib", None)):
        seed_everything(job.seed, workers=True)  # python, numpy and torch, as a job does
        datamodule = MultiClassMVTecAD(root=job.root, categories=job.categories, **job.datamodule)
        model = build_model(job.model_settings, coreset_selection=selection)
        engine = Engine(
            default_root_dir=tmp_path / name,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            max_epochs=1,
        )
        engine.fit(model=model, datamodule=datamodule)
        banks.append(model.model.memory_bank)
        models.append(model)
    (record,) = coreset_selections(models[0])
    assert record["implementation"] == "exact_fast" and record["points"] > 10 * record["selected"] > 0
    assert banks[0].shape[0] == record["selected"]
    assert torch.equal(banks[0], banks[1])


@pytest.mark.slow
def test_job_records_the_coreset_and_the_report_says_so(tmp_path: Path) -> None:
    """A Patchcore job on a two-root dataset: result.json records the selection, results.md shows it."""
    from anomalib_promptmad.benchmark.job import run_job
    from anomalib_promptmad.benchmark.report import write_report
    from anomalib_promptmad.benchmark.runner import JobOutcome
    from anomalib_promptmad.data.demo import generate_demo_dataset

    sizes = {"image_size": 32, "n_train": 6, "n_test_good": 2, "n_test_defect": 1}
    roots = [generate_demo_dataset(tmp_path / "a", categories=["disc"], **sizes)]
    roots.append(generate_demo_dataset(tmp_path / "b", categories=["fabric"], **sizes))
    data = _config(tmp_path)
    data["datasets"] = [{"name": "two", "type": "mvtec", "root": [str(root) for root in roots]}]
    data["models"] = data["models"][:1]
    config = parse_config(data, source="inline")
    (job,) = plan_jobs(config, tmp_path / "run")
    assert job.root == [str(root.resolve()) for root in roots]
    job_dir = tmp_path / "run" / "jobs" / job.id
    job_dir.mkdir(parents=True)
    result = run_job(job.to_dict(), job_dir)
    assert sorted(result["metrics"]) == ["disc", "fabric"]
    (record,) = result["coreset_selections"]
    assert record["implementation"] == "exact_fast" and record["sampling_ratio"] == 0.1
    saved = json.loads((job_dir / "result.json").read_text(encoding="utf-8"))
    assert saved["job"]["extra"] == {"coreset_selection": "exact_fast"}
    assert saved["coreset_selections"] == result["coreset_selections"]
    markdown = write_report(tmp_path / "run", config, [JobOutcome(job, "done", 1.0, job_dir)]).markdown
    text = markdown.read_text(encoding="utf-8")
    assert "## Coreset selection" in text and f"| `{job.id}` | exact_fast | {record['points']} |" in text
    assert '"coreset_selection":"exact_fast"' in text  # the settings column
