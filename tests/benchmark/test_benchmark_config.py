# Copyright (C) 2026 anomalib-promptmad developers
# SPDX-License-Identifier: Apache-2.0

"""Benchmark config checks, job planning, row aggregation and atomic writes (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anomalib_promptmad.benchmark.cli import main
from anomalib_promptmad.benchmark.config import BenchmarkConfig, BenchmarkConfigError, load_config, parse_config
from anomalib_promptmad.benchmark.plan import plan_jobs
from anomalib_promptmad.benchmark.report import build_rows
from anomalib_promptmad.infrastructure.atomic_write import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "configs" / "benchmark"


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _minimal(root: Path | None = None) -> dict[str, Any]:
    return {
        "image_size": 64,
        "backbone": "tf_efficientnet_lite0",
        "datasets": [
            {
                "name": "demo",
                "type": "demo",
                "root": str(root) if root else None,
                "categories": ["disc"],
                "generate": {"image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defect": 1},
            }
        ],
        "models": [{"name": "Padim", "class_path": "Padim"}],
    }


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (lambda d: d.update(epochs=3), "epochs", "unknown key; allowed keys: ['accelerator', 'backbone'"),
        (lambda d: d.update(source="x.yaml"), "source", "unknown key"),
        (lambda d: d.update(settings=["unified", "few_shot"]), "settings", "Got value: few_shot"),
        (lambda d: d.update(settings=[]), "settings", "needs at least one setting"),
        (lambda d: d.update(seed=None), "seed", "Expected a <class 'int'>. Got value: None"),
        (lambda d: d.pop("models"), "models", "required: a non-empty list"),
        (lambda d: d["models"][0].update(init_args=[1]), "models[0].init_args", "expected a mapping, got list"),
        (lambda d: d["models"][0].pop("class_path"), "models[0].class_path", "required, but not given"),
        (lambda d: d["models"][0].update(class_path=" "), "models[0].class_path", "NotEmptyStr"),
        (lambda d: d["models"][0].update(max_epochs=0), "models[0].max_epochs", "v>0"),
        (lambda d: d["models"].append({"class_path": "Padim"}), "models", "names must be unique"),
        (lambda d: d["models"][0].update(colour="red"), "models[0].colour", "unknown key"),
        (lambda d: d["datasets"][0].update(type="visa"), "datasets[0].type", "['mvtec', 'demo']. Got value: visa"),
        (lambda d: d["datasets"][0].update(generate=[1]), "datasets[0].generate", "expected a mapping, got list"),
        (lambda d: d["datasets"][0].update(categories=[]), "datasets[0].categories", "at least one category"),
        (lambda d: d["datasets"][0].update(init_args={"root": "x"}), "datasets[0].init_args.root", "entry itself"),
        (lambda d: d.update(image_size=[64]), "image_size", "Expected a tuple with 2 elements"),
        (lambda d: d["models"][0].update(settings=["per_class", "x"]), "models[0].settings", "Got value: x"),
        (
            lambda d: (d.update(settings=["unified"]), d["models"][0].update(settings="per_class")),
            "models[0].settings",
            "must be a non-empty subset of the config's settings ['unified'], got ['per_class']",
        ),
        (lambda d: d.update(exact_fast_coreset="maybe"), "exact_fast_coreset", "Expected a <class 'bool'>"),
        (lambda d: d.update(speed=[1]), "speed", "expected a mapping, got list"),
        (lambda d: d.update(speed={"batch_sizes": [8, 0]}), "speed.batch_sizes", "v>0"),
        (lambda d: d.update(speed={"min_iterations": None}), "speed.min_iterations", "PositiveInt"),
        (lambda d: d.update(figure={"size": 64, "dpi": 100}), "figure.dpi", "allowed keys: ['images_per_category'"),
    ],
)
def test_bad_keys_are_named_with_the_file(tmp_path: Path, change: Any, key: str, problem: str) -> None:
    """Every config mistake names the file and the key."""
    data = _minimal()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(BenchmarkConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)


def test_checks_that_need_classes_and_data_fail_before_any_job(tmp_path: Path) -> None:
    """Unknown argument names, unknown classes, missing roots and categories: errors before any job folder."""
    cases = [
        (lambda d: d["models"][0].update(init_args={"n_feature": 10}), "models[0].init_args.n_feature", "n_features"),
        (lambda d: d["models"][0].update(init_args={"layers": 5}), "models[0].init_args.layers", "Got value: 5"),
        (
            lambda d: d["models"][0].update(init_args={"pre_processor": False}),
            "models[0].init_args.pre_processor",
            "cannot be set in a benchmark",
        ),
        (lambda d: d["models"][0].update(class_path="Padimm"), "models[0].class_path", "not an anomalib model"),
        (
            lambda d: d["datasets"][0].update(type="mvtec", root="no/such/root", generate={}),
            "datasets[0].root",
            "does not exist",
        ),
        (lambda d: d["datasets"][0].update(categories=["cable"]), "datasets[0].generate", "Unknown demo categories"),
    ]
    for index, (change, key, problem) in enumerate(cases):
        data = _minimal(tmp_path / f"demo{index}")
        change(data)
        path = _write(tmp_path, data)
        with pytest.raises(BenchmarkConfigError, match=problem) as caught:
            plan_jobs(load_config(path), tmp_path / "run")
        assert str(caught.value).startswith(f"{path}: {key}: ")
    assert not (tmp_path / "run" / "jobs").exists()


def test_cli_bad_config_exits_2_and_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad config is a usage error (status 2), distinct from failed jobs (status 1)."""
    data = _minimal()
    data["speed"] = {"warmup": -1}
    path = _write(tmp_path, data)
    status = main(["--config", str(path), "--output", str(tmp_path / "run")])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{path}: speed.warmup: Not of type NonNegativeInt: -1 does not conform to restriction v>=0" in err
    assert not (tmp_path / "run").exists()


def test_shipped_configs_parse() -> None:
    """The shipped configs are valid; the real one runs the four models in both settings on bottle and pill."""
    real = load_config(CONFIGS / "mvtec_bottle_pill.yaml")
    assert [m.name for m in real.models] == ["PromptMAD", "Padim", "Patchcore", "Stfpm"]
    assert real.settings == ("unified", "per_class")
    assert real.datasets[0].categories == ("bottle", "pill")
    assert real.datasets[0].root == Path("../shared/data/mvtec_ad_256")
    patchcore = next(m for m in real.models if m.name == "Patchcore")
    assert patchcore.init_args["coreset_sampling_ratio"] == 0.01
    assert real.exact_fast_coreset is False  # its finished Patchcore jobs keep their settings (issue 13)
    load_config(CONFIGS / "demo_tiny.yaml")
    ablations = load_config(CONFIGS / "ablations_bottle_pill.yaml")
    assert [m.init_args["use_text_prompts"] for m in ablations.models] == [False, True, True, True, True]


def _missing_data(config: BenchmarkConfig) -> list[Path]:
    """Roots of the config's real (non-demo) datasets that are absent here, as the command would resolve them."""
    return [root for d in config.datasets if d.type != "demo" for root in d.roots if not root.is_dir()]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_plans(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every config under configs/benchmark parses and plans as ``--list`` does (real-data ones skip without data)."""
    monkeypatch.chdir(REPO_ROOT)  # their paths are relative to the repository root, where the command runs
    config = load_config(path)
    missing = _missing_data(config)
    if missing:
        pytest.skip(f"{path.name}: real data not found at {', '.join(map(str, missing))}")
    jobs = plan_jobs(config, tmp_path / "run", generate=False)
    assert jobs and len({job.id for job in jobs}) == len(jobs)
    assert not (tmp_path / "run").exists()


@pytest.mark.real_data
def test_four_category_config_is_one_dataset_from_two_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """mvtec_four.yaml: 3 MVTec AD categories + tire from two roots, 4 models, both settings; --list writes nothing."""
    monkeypatch.chdir(REPO_ROOT)
    config = load_config(CONFIGS / "mvtec_four.yaml")
    (dataset,) = config.datasets
    assert dataset.roots == (Path("../shared/data/mvtec_ad_256"), Path("../shared/data/mvtec_3d_ad_rgb_256"))
    assert [m.name for m in config.models] == ["PromptMAD", "Padim", "Patchcore", "Stfpm"]
    assert config.settings == ("unified", "per_class") and config.exact_fast_coreset
    if _missing_data(config):
        pytest.skip(f"real data not found at {', '.join(map(str, _missing_data(config)))}")
    output = tmp_path / "bench_list"
    assert main(["--config", str(CONFIGS / "mvtec_four.yaml"), "--output", str(output), "--list"]) == 0
    listed = [line.split("\t") for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert not output.exists()
    # one unified job per model, one per-class job per model and category
    assert len(listed) == 4 + 4 * 4
    assert [row[0] for row in listed[:4]] == [
        f"mvtec_four__unified__{m}" for m in ("PromptMAD", "Padim", "Patchcore", "Stfpm")
    ]
    assert {row[3] for row in listed[:4]} == {"bottle,pill,tire,transistor"}
    jobs = {job.id: job for job in plan_jobs(config, output, generate=False)}
    unified = jobs["mvtec_four__unified__Patchcore"]
    assert unified.root == [str((REPO_ROOT / root).resolve()) for root in dataset.roots]
    assert unified.model_settings["init_args"]["coreset_sampling_ratio"] == 0.1
    assert unified.extra == {"coreset_selection": "exact_fast"}
    assert jobs["mvtec_four__unified__Stfpm"].model_settings["max_epochs"] == 3
    assert jobs["mvtec_four__per_class__Padim__tire"].categories == ["tire"]


def test_plan_resolves_shared_backbone_and_settings(tmp_path: Path) -> None:
    """Per-class jobs per category; baselines get the shared backbone, its layers and pre-processing."""
    data = _minimal(tmp_path / "demo")
    data["datasets"][0]["categories"] = ["disc", "fabric"]
    data["models"].append({"name": "Stfpm", "class_path": "Stfpm", "max_epochs": 3, "settings": ["unified"]})
    jobs = plan_jobs(parse_config(data, source="inline"), tmp_path / "run")
    assert [job.id for job in jobs] == [
        "demo__unified__Padim",
        "demo__unified__Stfpm",
        "demo__per_class__Padim__disc",
        "demo__per_class__Padim__fabric",
    ]
    stfpm = jobs[1].model_settings
    assert stfpm["init_args"] == {
        "backbone": "tf_efficientnet_lite0",
        "layers": ["blocks.1", "blocks.2", "blocks.4"],
        "evaluator": False,
        "visualizer": False,
    }
    assert stfpm["max_epochs"] == 3
    assert stfpm["pre_processor"] == {"backbone": "tf_efficientnet_lite0", "image_size": [64, 64]}
    assert jobs[2].categories == ["disc"] and jobs[0].categories == ["disc", "fabric"]


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny MVTec-layout roots: disc in the first, fabric in the second."""
    from anomalib_promptmad.data.demo import generate_demo_dataset

    folder = tmp_path_factory.mktemp("roots")
    sizes = {"image_size": 32, "n_train": 2, "n_test_good": 1, "n_test_defect": 1}
    first = generate_demo_dataset(folder / "first", categories=["disc"], **sizes)
    second = generate_demo_dataset(folder / "second", categories=["fabric"], **sizes)
    return first, second


def _two_root_config(roots: list[Any], categories: Any = "all") -> dict[str, Any]:
    data = _minimal()
    data["datasets"] = [{"name": "both", "type": "mvtec", "root": [str(r) for r in roots], "categories": categories}]
    return data


@pytest.mark.parametrize(
    ("root", "key", "problem"),
    [
        ([], "datasets[0].root", "needs at least one folder"),
        (["a", 3], "datasets[0].root", "Not of type Path: expected str, bytes or os.PathLike object, not int"),
        (["a", "b", "a"], "datasets[0].root[2]", "'a' is listed twice"),
        ({"a": 1}, "datasets[0].root", "Given value: {'a': 1}"),
    ],
)
def test_bad_root_lists_are_named_with_the_file(tmp_path: Path, root: Any, key: str, problem: str) -> None:
    """A dataset's root list is checked item by item, naming the file and the key."""
    data = _minimal()
    data["datasets"][0].update(type="mvtec", root=root, generate={})
    path = _write(tmp_path, data)
    with pytest.raises(BenchmarkConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert problem in str(caught.value)


def test_root_list_reads_as_tuple_and_one_item_as_that_root(tmp_path: Path) -> None:
    """Several roots stay a tuple; a list of one is that root (its jobs keep single-root settings)."""
    data = _two_root_config(["x/a", "x/b"])
    assert parse_config(data).datasets[0].root == (Path("x/a"), Path("x/b"))
    assert parse_config(data).datasets[0].roots == (Path("x/a"), Path("x/b"))
    data["datasets"][0]["root"] = ["x/a"]
    assert parse_config(data).datasets[0].root == Path("x/a")
    demo = _minimal()
    demo["datasets"][0]["root"] = ["x/a", "x/b"]
    path = _write(tmp_path, demo)
    with pytest.raises(BenchmarkConfigError, match=r"datasets\[0\]\.root: a demo dataset has one root"):
        load_config(path)


def test_plan_with_two_roots_resolves_categories_across_them(tmp_path: Path, two_roots: tuple[Path, Path]) -> None:
    """One dataset from two roots: categories from both, every job carries the list of absolute roots."""
    jobs = plan_jobs(parse_config(_two_root_config(list(two_roots)), source="inline"), tmp_path / "run")
    assert [job.id for job in jobs] == [
        "both__unified__Padim",
        "both__per_class__Padim__disc",
        "both__per_class__Padim__fabric",
    ]
    expected = [str(root.resolve()) for root in two_roots]
    assert all(job.root == expected and job.to_dict()["root"] == expected for job in jobs)
    assert jobs[0].categories == ["disc", "fabric"]


def test_single_root_jobs_keep_their_settings(tmp_path: Path, two_roots: tuple[Path, Path]) -> None:
    """A single root (also a list of one) is still a string in the job's settings, so finished jobs resume."""
    for root in (str(two_roots[0]), [str(two_roots[0])]):
        data = _minimal()
        data["datasets"] = [{"name": "one", "type": "mvtec", "root": root}]
        job = plan_jobs(parse_config(data), tmp_path / "run")[0].to_dict()
        assert job["root"] == str(two_roots[0].resolve())
        # the keys of job.json before multi-root datasets: a new key would make every finished job rerun
        assert list(job) == [
            "id",
            "dataset",
            "dataset_type",
            "root",
            "categories",
            "setting",
            "model",
            "model_settings",
            "datamodule",
            "seed",
            "accelerator",
            "threads",
            "speed",
            "figure",
            "keep_checkpoints",
            "extra",
        ]
        assert job["extra"] == {}


def test_report_names_every_root_of_a_dataset(tmp_path: Path, two_roots: tuple[Path, Path]) -> None:
    """results.md says where a dataset's categories came from: both roots of a two-root dataset."""
    from anomalib_promptmad.benchmark.report import write_report
    from anomalib_promptmad.benchmark.runner import JobOutcome

    config = parse_config(_two_root_config(list(two_roots)), source="inline")
    jobs = plan_jobs(config, tmp_path / "run")
    outcomes = [JobOutcome(job, "failed", 0.0, tmp_path / "run" / "jobs" / job.id, error="boom") for job in jobs]
    markdown = write_report(tmp_path / "run", config, outcomes).markdown.read_text(encoding="utf-8")
    first, second = (root.resolve() for root in two_roots)
    assert f"- Dataset `both`: 2 roots `{first} + {second}`; categories disc, fabric." in markdown


def test_two_root_errors_name_the_key_and_the_root(tmp_path: Path, two_roots: tuple[Path, Path]) -> None:
    """A missing root, a category under two roots and an unknown category: errors naming the key, before any job."""
    first, second = two_roots
    duplicate = tmp_path / "duplicate"  # a third root that holds disc again
    duplicate.mkdir()
    (duplicate / "disc").symlink_to(first / "disc", target_is_directory=True)
    absent = tmp_path / "absent"
    cases = [
        ([first, absent], "all", "datasets[0].root[1]", f"dataset folder '{absent}' does not exist"),
        ([first, second, duplicate], "all", "datasets[0].root", "found under more than one root"),
        ([first, second], ["disc", "cable"], "datasets[0].categories", "'cable'"),
        ([first, second, first / "disc" / ".."], "all", "datasets[0].root[2]", "same folder as datasets[0].root[0]"),
    ]
    for roots, categories, key, problem in cases:
        path = _write(tmp_path, _two_root_config(roots, categories))
        with pytest.raises(BenchmarkConfigError) as caught:
            plan_jobs(load_config(path), tmp_path / "run")
        assert str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
        assert problem in str(caught.value)
    assert not (tmp_path / "run").exists()


def _result(job_id: str, setting: str, metrics: dict[str, float], fit_s: float, memory: float) -> dict[str, Any]:
    full = {name: value for name, value in metrics.items()}
    categories = ["disc", "fabric"] if setting == "unified" else [job_id.rsplit("__", 1)[1]]
    return {
        "job": {
            "id": job_id,
            "dataset": "demo",
            "setting": setting,
            "model": "Padim",
            "model_settings": {"class_path": "Padim", "init_args": {}, "max_epochs": 1, "pre_processor": None},
        },
        "metrics": {c: {**full, "image_AUROC": full["image_AUROC"] + i * 0.1} for i, c in enumerate(categories)},
        "counts": {c: {"n_images": 7, "n_anomalous": 4} for c in categories},
        "cost": {"fit_s": fit_s, "images_per_s": {"1": 10.0, "8": 40.0}, "peak_memory_mib": memory},
    }


def test_rows_aggregate_per_class_cost_and_mean() -> None:
    """per_class mean row: quality averaged, fit time summed, memory maximal; unified: the job's own cost."""
    config = parse_config(_minimal(), source="inline")
    metrics = {
        "image_AUROC": 0.5,
        "image_AP": 0.6,
        "pixel_AUROC": 0.7,
        "pixel_AP": None,
        "AUPRO": 0.8,
        "image_F1Max": 0.9,
    }
    results = [
        _result("demo__unified__Padim", "unified", metrics, 5.0, 900.0),
        _result("demo__per_class__Padim__disc", "per_class", metrics, 2.0, 800.0),
        _result("demo__per_class__Padim__fabric", "per_class", metrics, 3.0, 850.0),
    ]
    rows = {(r["setting"], r["category"]): r for r in build_rows(config, results)}
    assert rows["per_class", "mean"]["fit_s"] == 5.0
    assert rows["per_class", "mean"]["peak_memory_mib"] == 850.0
    assert rows["per_class", "mean"]["n_images"] == 14
    assert rows["per_class", "disc"]["image_AUROC"] == 0.5  # each per-class job holds one category
    assert rows["unified", "mean"]["image_AUROC"] == pytest.approx(0.55)
    assert rows["unified", "fabric"]["fit_s"] == 5.0
    assert rows["unified", "mean"]["pixel_AP"] is None  # undefined everywhere: no number is made up


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path: Path) -> None:
    """An interrupted write leaves the previous content and no temporary file."""
    target = tmp_path / "result.json"
    write_text_atomic(target, "old")

    class Interrupted(BaseException):
        pass

    def write(file: Any) -> None:
        file.write(b"half")
        raise Interrupted

    from anomalib_promptmad.infrastructure.atomic_write import write_atomic

    with pytest.raises(Interrupted):
        write_atomic(target, write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_list_runs_nothing_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--list`` prints the jobs a run would have, without generating its demo dataset (issue 14)."""
    output = tmp_path / "run"
    status = main(["--config", str(CONFIGS / "demo_tiny.yaml"), "--output", str(output), "--list"])
    assert status == 0
    listed = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert not output.exists()  # the demo dataset used to be generated under <output>/data/demo
    planned = [job.id for job in plan_jobs(load_config(CONFIGS / "demo_tiny.yaml"), output.resolve())]
    assert listed == planned  # the same jobs as the run (which generates the data first)


def test_list_checks_the_demo_generator_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad ``generate`` entry is still refused by ``--list``, which does not call the generator."""
    data = _minimal()
    data["datasets"][0]["generate"]["n_images"] = 3
    status = main(["--config", str(_write(tmp_path, data)), "--output", str(tmp_path / "run"), "--list"])
    assert status == 2
    assert "unknown arguments ['n_images']" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
