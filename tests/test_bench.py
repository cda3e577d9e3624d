"""The benchmark runner: the smoke grid end to end, resume, failures, folder checks, local vs Ray, validation.

The pre-trained smoke models are shared by every test through one module-scoped
cache folder, so only the first grid run trains (two tiny models).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from conftest import torch_threads

from rem_unlearn.bench import (BENCH_FORMAT, GRID_PRESETS, GridConfig, GridMismatchError, LocalEngine, ResultStore,
                               cell_key, expand, grid_preset, load_grid, run_grid)
from rem_unlearn.bench import cell as bench_cell
from rem_unlearn.bench.grid import grid_dict
from rem_unlearn.config import ConfigError, load_config
from rem_unlearn.methods import METHODS, Method, register_method
from rem_unlearn.metrics import METRIC_NAMES

BOOM = "bench-test-boom"


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    mp = pytest.MonkeyPatch()
    mp.setenv("REM_UNLEARN_QUIET", "1")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def smoke(cache: Path, **changes) -> GridConfig:
    """The smoke preset with the shared model cache and ``changes`` (top-level grid keys)."""
    data = grid_preset("smoke")
    data["experiment_overrides"]["runtime"] = {"cache_dir": str(cache)}
    data.update(changes)
    return load_config(GridConfig, base=data)


@pytest.fixture(scope="module")
def smoke_run(cache_dir, tmp_path_factory):
    grid = smoke(cache_dir)
    results = tmp_path_factory.mktemp("smoke") / "results"
    records = run_grid(grid, results, quiet=True)
    return grid, results, records


def _count_calls(monkeypatch) -> list:
    calls: list = []
    real = bench_cell.run_cell

    def counting(cell):
        calls.append(cell_key(cell))
        return real(cell)

    monkeypatch.setattr(bench_cell, "run_cell", counting)
    return calls


def _fmt(values: list[float]) -> str:
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sem:.2f}"


# ----------------------------------------------------------------------------- the grid


def test_presets_expand_with_unique_keys():
    sizes = {"smoke": 16, "quick": 30, "default": 3 * 3 * len(load_grid("default").methods),
             "paper-cifar10-resnet9-cpu": 3 * 3 * 6, "paper-svhn-vit-cpu": 54, "fashion-mnist-vit": 54}
    for name in GRID_PRESETS:
        grid = load_grid(name)
        cells = expand(grid)
        assert len({cell_key(c) for c in cells}) == len(cells)
        if name in sizes:
            assert len(cells) == sizes[name], name
    default = load_grid("default")
    assert not {"rem-ideal", "rem-no-3.1", "rem-no-3.2", "rem-ga"} & set(default.methods)
    assert {c.variant for c in expand(default)} == {"capacity"} and "etd" not in default.methods
    assert load_grid("paper").discovery_rates == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    vit = load_grid("paper-svhn-vit")
    assert vit.seeds == [0, 1, 2]
    first = expand(vit)[0]
    assert first.experiment.model.arch == "vit" and first.experiment.train.optim.optimizer == "adam"
    assert first.overrides["optim"]["optimizer"] == "adam" and first.overrides["optim"]["lr"] == 2e-5  # unlearning
    faithful = expand(load_grid("faithful", overrides=["seeds=[1]"]))
    assert {(c.method, c.variant) for c in faithful} == {
        ("none", "capacity"), ("rem", "capacity"), ("rem-official", "capacity"), ("retrain", "capacity"),
        ("potion", "capacity"), ("etd", "etd"), ("rem", "etd"), ("npo", "etd"), ("scrub", "etd"), ("bad-teacher", "etd")}
    assert len(faithful) == 10 * 3 * 4 and all(c.overrides["epochs"] == 10 for c in faithful)
    assert all(c.seed == 1 and c.overrides["seed"] == 1 for c in faithful)  # the unlearning seed follows the cell
    twin = expand(load_grid("paper-svhn-vit-cpu"))[0].experiment
    assert twin.data.name == "svhn" and twin.data.train_size == 10000 and twin.model.dim == 128


def test_cli_unlearn_runs_the_recipes_unlearning_optimiser(tmp_path, monkeypatch):
    """`rem-unlearn unlearn --preset X` unlearns with X's unlearning optimiser (it once reached only the
    benchmark): the CLI, the API and the grid read it from one place, and `--set` still wins."""
    from conftest import write_fashion_mnist
    from rem_unlearn import cli
    from rem_unlearn.cli import main
    from rem_unlearn.config import ExperimentConfig
    from rem_unlearn.experiment import method_overrides
    from rem_unlearn.presets import experiment_preset

    vit = load_config(ExperimentConfig, base=experiment_preset("paper-svhn-vit"))
    assert method_overrides(vit, {})["optim"]["optimizer"] == "adam"
    assert method_overrides(vit, {"optim": {"lr": 1e-3}})["optim"] == {**method_overrides(vit, {})["optim"], "lr": 1e-3}

    seen = {}

    class Stop(Exception):
        pass

    def spy(model, train_set, forget_ids, method="rem", **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(cli, "unlearn", spy)
    root = write_fashion_mnist(tmp_path / "fm")
    ids = tmp_path / "ids.txt"
    ids.write_text("0\n1\n")
    argv = ["unlearn", "--preset", "fashion-mnist", "--forget-ids", str(ids), "--out", str(tmp_path / "o.safetensors"),
            "--set", "optim.batch_size=16", f"data.root={root}", "data.train_size=null", "corruption.size=10",
            "model.width=0.125", "train.epochs=1", "train.optim.batch_size=64", "runtime.progress=false",
            f"runtime.cache_dir={tmp_path / 'cache'}", "unlearn_optim.optimizer=adam", "unlearn_optim.lr=0.0002"]
    with pytest.raises(Stop):
        main(argv)
    assert seen["optim"]["optimizer"] == "adam" and seen["optim"]["lr"] == 2e-4 and seen["optim"]["batch_size"] == 16

def test_cells_resolve_seeds_and_keys(tmp_path):
    grid = smoke(tmp_path, seeds=[3], variants=["etd"])
    cells = expand(grid)
    cfg = cells[0].experiment
    assert (cfg.corruption.seed, cfg.train.seed, cfg.model.mask_seed, cfg.model.variant) == (3, 3, 3, "etd")
    assert cfg.data.train_size == 600 and cfg.corruption.kind == cells[0].corruption
    # Where the cache lives does not change a key; what a cell computes does.
    moved = expand(smoke(tmp_path / "elsewhere", seeds=[3], variants=["etd"]))
    assert [cell_key(c) for c in moved] == [cell_key(c) for c in cells]
    longer = expand(smoke(tmp_path, seeds=[3], variants=["etd"], unlearn={"epochs": 2}))
    assert not {cell_key(c) for c in longer} & {cell_key(c) for c in cells}
    per_method = smoke(tmp_path, method_overrides={"ga": {"epochs": 3}})
    assert next(c for c in expand(per_method) if c.method == "ga").overrides["epochs"] == 3


@pytest.mark.parametrize("overrides, message", [
    (["methods=[rem,no-such-method]"], "registered methods: "),
    (["variant_methods.etd=[rem,nope]"], "registered methods: "),
    (["discovery_rates=[0.0,1.0]"], "not in (0, 1]"),
    (["discovery_rates=[1.5]"], "not in (0, 1]"),
    (["corruptions=[poison,flood]"], "choose from: random, interclass, poison"),
    (["variants=[huge]"], "choose from: capacity, etd"),
    (["experiment=mnist"], "choose one of: fashion-mnist"),
    (["methods_list=[rem]"], "valid keys: experiment"),
    (["unlearn.epochz=2"], "valid keys: optim, epochs"),
    (["method_overrides.rem.beta=-1"], "beta > 0"),
    (["experiment_overrides.model.widht=1"], "valid keys: arch, width"),
    (["verify=[relearn,nope]"], "choose from: relearn, recalibrate, views"),
    (["verify=[views,views]"], "verify has duplicates"),
])
def test_grid_validation(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_grid("smoke", overrides=overrides)
    assert message in str(info.value)
    if "registered methods" in message:
        assert "rem, rem-ga" in str(info.value) and "none" in str(info.value)


# ----------------------------------------------------------------------------- the store


def _fake_record(key: str, status: str = "ok") -> dict:
    return {"schema": 1, "bench_format": BENCH_FORMAT, "key": key, "status": status,
            "error": None if status == "ok" else "Traceback\nRuntimeError: x",
            "cell": {"dataset": "fashion-mnist", "variant": "capacity", "corruption": "random", "seed": 0,
                     "discovery_rate": 1.0, "method": "none"},
            "metrics": dict.fromkeys(METRIC_NAMES, 1.0) if status == "ok" else None,
            "wall_time_s": 0.5 if status == "ok" else None}


def test_store_validates_records(tmp_path):
    store = ResultStore(tmp_path)
    store.write(_fake_record("a"))
    store.write(_fake_record("b", status="failed"))
    store.records_dir.joinpath("c.json").write_text('{"schema": 1, "key": "c", "sta')  # truncated
    incomplete = _fake_record("d")
    del incomplete["metrics"]["healed"]
    store.path("d").write_text(json.dumps(incomplete))
    store.path("e").write_text(json.dumps(_fake_record("not-e")))  # key does not match the name
    with pytest.raises(ValueError):
        store.write(incomplete)
    assert store.done_keys() == {"a", "b"}
    assert store.done_keys(retry_failed=True) == {"a"}
    names = sorted(p.name for p in store.records_dir.iterdir())
    assert names == ["a.json", "b.json", "c.json.corrupt-0", "d.json.corrupt-0", "e.json.corrupt-0"]


# ----------------------------------------------------------------------------- end to end


def test_smoke_grid_end_to_end(smoke_run):
    grid, results, records = smoke_run
    cells = expand(grid)
    assert len(records) == len(cells) == 16
    assert {r["key"] for r in records} == {cell_key(c) for c in cells}
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records if r["status"] != "ok"]
    for r in records:
        assert set(METRIC_NAMES) <= set(r["metrics"])
        assert r["metrics"]["forget_accuracy"] is not None and r["metrics"]["retain_accuracy"] is not None
        assert r["wall_time_s"] >= 0 and r["threads"] >= 1 and r["host"] and r["versions"]["torch"]
        assert r["config"]["experiment"]["corruption"]["kind"] == r["cell"]["corruption"]
        assert r["n_forget"] == round(r["cell"]["discovery_rate"] * r["n_corrupted"])
        assert (results / "records" / f"{r['key']}.json").is_file()
    # The trained reference is the same model at every rate (only forget/retain accuracy depend on the rate).
    for corruption in grid.corruptions:
        none = [r["metrics"] for r in records if r["cell"]["method"] == "none" and r["cell"]["corruption"] == corruption]
        assert len(none) == 2 and none[0]["score"] == none[1]["score"]

    for name in ("results.csv", "summary.md", "index.html", "wall_time.png", "grid.json",
                 "heatmap_score_fashion-mnist_capacity.png", "heatmap_healed_fashion-mnist_capacity.png"):
        assert (results / name).is_file() and (results / name).stat().st_size > 0, name
    with open(results / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 16
    assert json.loads((results / "grid.json").read_text())["bench_format"] == BENCH_FORMAT

    # The summary table equals a recomputation from the records.
    md = (results / "summary.md").read_text()
    for method in grid.methods:
        mine = [r for r in records if r["cell"]["method"] == method]
        label = "Trained (none)" if method == "none" else method
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        cells_md = [c.strip().strip("*") for c in row.strip().strip("|").split("|")]
        assert cells_md[1] == _fmt([r["metrics"]["healed"] for r in mine])
        assert cells_md[2] == _fmt([r["metrics"]["utility"] for r in mine])
        assert cells_md[3] == _fmt([r["metrics"]["score"] for r in mine])
        assert cells_md[4] == _fmt([r["wall_time_s"] for r in mine])
        assert cells_md[5] == str(len(mine))


def test_resume_runs_only_missing_and_corrupt_cells(smoke_run, tmp_path, monkeypatch):
    grid, original, records = smoke_run
    results = tmp_path / "results"
    shutil.copytree(original, results)
    by_key = {r["key"]: r for r in records}
    keys = sorted(by_key)
    deleted, truncated = keys[:2], keys[2]
    for k in deleted:  # a killed run: these cells never finished
        (results / "records" / f"{k}.json").unlink()
    path = results / "records" / f"{truncated}.json"
    path.write_text(path.read_text()[:100])  # a torn copy
    (results / "records" / f".{keys[3]}.json.abc.tmp").write_text("{")  # a writer killed mid-write

    calls = _count_calls(monkeypatch)
    again = run_grid(grid, results, quiet=True)
    assert sorted(calls) == sorted(deleted + [truncated])
    assert (results / "records" / f"{truncated}.json.corrupt-0").is_file()
    assert not list((results / "records").glob(".*.tmp"))
    assert len(again) == 16 and all(r["status"] == "ok" for r in again)
    for r in again:  # same process, same threads, same seeds: the redone cells give the same numbers
        assert r["metrics"] == by_key[r["key"]]["metrics"]

    calls.clear()
    run_grid(grid, results, quiet=True)
    assert calls == []


@pytest.fixture
def boom_method():
    @register_method(BOOM, replace=True)
    class Boom(Method):
        summary = "raises (test only)"

        def run(self, ctx):
            raise RuntimeError("boom from the test method")

    yield BOOM
    METHODS.pop(BOOM, None)


def test_failing_method_is_recorded_and_sweep_completes(boom_method, cache_dir, tmp_path, monkeypatch, capsys):
    from rem_unlearn.cli import main

    results = tmp_path / "results"
    argv = ["bench", "--preset", "smoke", "--results", str(results), "--quiet", "corruptions=[random]",
            "discovery_rates=[1.0]", f"methods=[none,{BOOM}]", f"experiment_overrides.runtime.cache_dir={cache_dir}"]
    assert main(argv) == 1  # some cell failed
    out = capsys.readouterr()
    assert str(results / "index.html") in out.out and "--retry-failed" in out.err
    recs = {r["cell"]["method"]: r for r in ResultStore(results).scan().values()}
    assert recs["none"]["status"] == "ok"
    assert recs[BOOM]["status"] == "failed" and recs[BOOM]["metrics"] is None
    assert "Traceback" in recs[BOOM]["error"] and "boom from the test method" in recs[BOOM]["error"]
    assert "1 failed cell(s)" in (results / "summary.md").read_text()

    calls = _count_calls(monkeypatch)
    assert main(argv) == 1
    assert calls == []  # failed cells are not retried by default
    assert main(argv + ["--retry-failed"]) == 1
    assert calls == [recs[BOOM]["key"]]


@pytest.mark.parametrize("made_native", [True, False])
def test_a_folder_is_not_resumed_in_another_autocast(made_native, tmp_path, monkeypatch):
    """runtime.precision=auto is bf16 on a CPU with native bf16 and fp32 elsewhere: a folder of one kind's cells
    is refused on the other kind of CPU (folders from before grid.json kept the autocast count as bf16)."""
    grid = smoke(tmp_path / "cache")
    native = {"now": made_native}
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native["now"])
    store = ResultStore(tmp_path / "results")
    store.write_grid(grid)
    saved = json.loads(store.grid_path.read_text())
    assert saved["precision"] == ("auto" if made_native else "fp32")
    store.check_grid(grid)  # the same kind of CPU resumes it
    native["now"] = not made_native
    with pytest.raises(GridMismatchError, match="autocast") as info:
        store.check_grid(grid)
    assert ("ran in bf16 (auto) autocast, here they run in fp32" in str(info.value)) == made_native
    if made_native:  # a folder written before grid.json kept the autocast ran bf16
        store.grid_path.write_text(json.dumps({k: v for k, v in saved.items() if k != "precision"}))
        with pytest.raises(GridMismatchError, match="autocast"):
            store.check_grid(grid)
        native["now"] = True
        store.check_grid(grid)


def test_other_grid_or_format_is_refused(smoke_run, tmp_path, monkeypatch):
    grid, original, records = smoke_run
    results = tmp_path / "results"
    shutil.copytree(original, results)
    smaller = smoke(Path(grid.experiment_overrides["runtime"]["cache_dir"]), methods=["none", "ga"])
    with pytest.raises(GridMismatchError) as info:
        run_grid(smaller, results, quiet=True)
    msg = str(info.value)
    assert "different grid" in msg and "methods" in msg and "--force" in msg and "new folder" in msg

    # --force reuses the records of the current grid and leaves the others out of the report.
    calls = _count_calls(monkeypatch)
    reused = run_grid(smaller, results, quiet=True, force=True)
    assert calls == [] and len(reused) == 8 and {r["cell"]["method"] for r in reused} == {"none", "ga"}
    with open(results / "results.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8
    run_grid(smaller, results, quiet=True)  # the folder now belongs to the smaller grid
    # ... and a report rebuilt from the folder alone knows it: the other grid's records stay out.
    from rem_unlearn.cli import main as cli

    assert len(list((results / "records").glob("*.json"))) == 16
    assert cli(["report", str(results)]) == 0
    with open(results / "results.csv", newline="") as fh:
        assert {row["method"] for row in csv.DictReader(fh)} == {"none", "ga"}

    grid_json = results / "grid.json"
    saved = json.loads(grid_json.read_text())
    saved["bench_format"] = BENCH_FORMAT + 1
    grid_json.write_text(json.dumps(saved))
    with pytest.raises(GridMismatchError, match=f"benchmark format {BENCH_FORMAT + 1}"):
        ResultStore(results).check_grid(smaller)
    ResultStore(results).check_grid(smaller, force=True)

    grid_json.unlink()  # no grid.json: the records themselves are checked
    record = next((results / "records").glob("*.json"))
    old = json.loads(record.read_text())
    old["bench_format"] = 0
    record.write_text(json.dumps(old))
    with pytest.raises(GridMismatchError, match="records of benchmark format 0"):
        ResultStore(results).check_grid(smaller)


def test_seeds_run_one_at_a_time_accumulate(cache_dir, tmp_path, monkeypatch):
    """The faithful preset runs one seed per invocation into one folder: the second seed is not another grid,
    and the report covers every seed run so far."""
    from rem_unlearn.report import load_records

    results = tmp_path / "results"
    one = dict(corruptions=["random"], discovery_rates=[0.5], methods=["none", "ga"])
    run_grid(smoke(cache_dir, seeds=[0], **one), results, quiet=True)
    calls = _count_calls(monkeypatch)
    records = run_grid(smoke(cache_dir, seeds=[1], **one), results, quiet=True)
    assert len(calls) == 2 and {r["cell"]["seed"] for r in records} == {1}
    assert json.loads((results / "grid.json").read_text())["grid"]["seeds"] == [0, 1]
    assert sorted(r["cell"]["seed"] for r in load_records(results)) == [0, 0, 1, 1]
    ga = {r["cell"]["seed"]: r["config"]["method"]["seed"] for r in load_records(results) if r["cell"]["method"] == "ga"}
    assert ga == {0: 0, 1: 1}  # the unlearning seed follows the cell's seed


def test_stress_test_columns_keep_other_keys_and_reach_the_report(cache_dir, tmp_path):
    """verify=[...] changes only the keys of the cells it stresses (earlier records stay valid), records every
    stress metric, and the report gains the table and the relearn heatmaps."""
    from rem_unlearn.report import build_report

    one = dict(corruptions=["poison"], discovery_rates=[1.0], methods=["ga"])
    plain = smoke(cache_dir, **one)
    stressed = smoke(cache_dir, verify=["relearn", "recalibrate", "views"], **one)
    assert not {cell_key(c) for c in expand(plain)} & {cell_key(c) for c in expand(stressed)}
    assert "verify" not in grid_dict(plain) and grid_dict(stressed)["verify"] == ["relearn", "recalibrate", "views"]
    records = run_grid(stressed, tmp_path / "results", quiet=True)
    names = {f"{t}_{m}" for t in ("relearn", "recalibrate") for m in ("healed", "utility", "attack_success", "fit")}
    for record in records:
        assert record["status"] == "ok" and names | {"views_fit"} <= set(record["metrics"]), record["error"]
        assert 0 <= record["metrics"]["relearn_attack_success"] <= 100
    paths = build_report(records, tmp_path / "report")
    assert "heatmap_relearn_attack_success_fashion-mnist_capacity" in paths
    assert "attack success → relearned" in (tmp_path / "report" / "summary.md").read_text()


def test_process_pool_matches_in_process(cache_dir, tmp_path):
    grid = smoke(cache_dir, corruptions=["random"], discovery_rates=[0.5], methods=["none", "ga"])
    serial = run_grid(grid, tmp_path / "serial", engine=LocalEngine(1, threads=1), quiet=True)
    pool = run_grid(grid, tmp_path / "pool", workers=2, quiet=True)  # 2 spawned workers x 1 thread on 2 cores
    assert all(r["status"] == "ok" for r in serial + pool), [r["error"] for r in serial + pool]
    assert {r["threads"] for r in pool} == {max(1, (os.cpu_count() or 1) // 2)}
    assert {r["key"]: r["metrics"] for r in pool} == {r["key"]: r["metrics"] for r in serial}


def test_pretraining_on_the_pool_matches_in_process_and_reports_failures(tmp_path, monkeypatch):
    """``--workers 2`` trains two models at a time in 1-thread processes: the same weights as training them
    in this process with 1 thread; a model that cannot be trained is returned as its traceback, the rest train."""
    from collections import OrderedDict

    from rem_unlearn.bench import pretrain_all
    from rem_unlearn.bench.cell import task_key
    from rem_unlearn.experiment import is_cached, prepare

    monkeypatch.setattr(bench_cell, "_TASKS", OrderedDict())  # this process's tasks do not stand in for training

    one = dict(corruptions=["poison", "random"], discovery_rates=[0.5], methods=["none"])
    pool_grid, serial_grid = smoke(tmp_path / "pool", **one), smoke(tmp_path / "serial", **one)
    (tmp_path / "a-file").write_text("not a folder")  # a cache that cannot be written: its model fails to save
    broken = smoke(tmp_path / "a-file", corruptions=["interclass"], discovery_rates=[0.5], methods=["none"])
    errors = pretrain_all(expand(pool_grid) + expand(broken), quiet=True, workers=2, threads=1)
    broken_key = task_key(expand(broken)[0].experiment)
    assert list(errors) == [broken_key] and "Traceback" in errors[broken_key]
    with torch_threads(1):
        assert pretrain_all(serial_grid, quiet=True) == {}
    for pool_cell, serial_cell in zip(expand(pool_grid), expand(serial_grid)):
        assert is_cached(pool_cell.experiment) and is_cached(serial_cell.experiment)
        pooled = prepare(pool_cell.experiment).model.state_dict()
        serial = prepare(serial_cell.experiment).model.state_dict()
        assert pooled.keys() == serial.keys()
        assert all(torch.equal(pooled[k], serial[k]) for k in pooled)


def test_a_model_left_over_by_the_pool_is_trained_by_its_first_cell(tmp_path, monkeypatch):
    """Three uncached models on two workers: the pool trains two, the third is trained by its first cell
    (at the front of the run, while the other worker runs the trained models' cells), its other cells come
    last; every cell succeeds, and a failed first cell fails its model's other cells without training again."""
    from collections import OrderedDict

    from rem_unlearn.bench import runner
    from rem_unlearn.bench.cell import task_key
    from rem_unlearn.experiment import is_cached

    monkeypatch.setattr(bench_cell, "_TASKS", OrderedDict())
    grid = smoke(tmp_path / "cache", corruptions=["poison", "interclass", "random"], discovery_rates=[0.5],
                 methods=["none", "ga"])
    cells = [(c.key, c) for c in expand(grid)]
    left = runner.left_to_cells([c for _, c in cells], workers=2)
    assert left == {task_key(cells[-1][1].experiment)}  # the last of three models
    assert runner.left_to_cells([c for _, c in cells], workers=1) == set()
    assert runner.left_to_cells([c for _, c in cells if c.corruption == "poison"], workers=2) == set()
    order = runner.training_first(cells, left)
    assert [c.corruption for _, c in order] == ["random", "poison", "poison", "interclass", "interclass", "random"]
    assert [c.trains_model for _, c in order] == [True] + [False] * 5
    assert sorted(k for k, _ in order) == sorted(k for k, _ in cells)

    pretrained: list = []
    real = runner.pretrain_all
    monkeypatch.setattr(runner, "pretrain_all",
                        lambda cells, **kw: pretrained.extend(cells) or real(cells, **kw))
    records = run_grid(grid, tmp_path / "results", workers=2, quiet=True)
    assert {c.corruption for c in pretrained} == {"poison", "interclass"}
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    assert all(is_cached(c.experiment) for _, c in cells)

    # A first cell that cannot train its model (the cache is a file) fails that model's other cells without
    # running them. Cells in this process, in order; the pool's size is faked to leave the model to a cell.
    (tmp_path / "a-file").write_text("not a folder")
    broken = smoke(tmp_path / "a-file", corruptions=["poison", "interclass", "random"], discovery_rates=[0.5],
                   methods=["none", "ga"])
    monkeypatch.setattr(runner, "pretrain_pool", lambda engine: {"workers": 2, "threads": 1})
    monkeypatch.setattr(runner, "pretrain_all", lambda cells, **kw: {})
    ran = _count_calls(monkeypatch)
    records = run_grid(broken, tmp_path / "broken", engine=LocalEngine(1, threads=1), quiet=True)
    random = [r for r in records if r["cell"]["corruption"] == "random"]
    assert all(r["status"] == "failed" for r in records) and len(ran) == 5  # the last random cell never ran
    assert sum("pre-training the model failed" in r["error"] for r in random) == 1


def test_records_name_command_and_commit_and_cells_reach_tensorboard(cache_dir, tmp_path, monkeypatch):
    """Each record says which command, commit and autocast made it; the leaderboard shows the first two; --log
    puts each cell in TensorBoard as one run with its metrics."""
    from rem_unlearn.checkpoint import source_commit
    from rem_unlearn.training import Runtime

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("REM_UNLEARN_COMMIT", "0123456789abcdef0123456789abcdef01234567-dirty")
    source_commit.cache_clear()
    grid = smoke(cache_dir, methods=["none", "rem"], discovery_rates=[1.0])
    command = "rem-unlearn bench --preset smoke methods=[none,rem]"
    try:
        records = run_grid(grid, tmp_path / "results", quiet=True, command=command, track="tensorboard")
    finally:
        source_commit.cache_clear()
    assert len(records) == 4
    assert all(r["command"] == command and r["commit"].startswith("0123456789ab") for r in records)
    assert {r["precision"] for r in records} == {Runtime.from_config().precision}  # auto, as it ran here
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    rows = [line for line in board.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2 and all(f"`{command}`" in r and "`0123456789ab-dirty`" in r for r in rows)
    runs = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 4
    for r in records:
        (run,) = [p for p in runs if p.name.endswith(r["key"])]
        events = EventAccumulator(str(run))
        events.Reload()
        assert events.Scalars("score")[0].value == pytest.approx(r["metrics"]["score"])


def test_source_commit_of_this_checkout(monkeypatch):
    from rem_unlearn.checkpoint import source_commit

    monkeypatch.delenv("REM_UNLEARN_COMMIT", raising=False)
    source_commit.cache_clear()
    try:
        commit = source_commit()
    finally:
        source_commit.cache_clear()
    import rem_unlearn

    tracked = (Path(rem_unlearn.__file__).resolve().parents[2] / ".git").exists()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit) if tracked else commit == "unknown", commit


def test_worker_with_other_code_fails_the_cell(tmp_path):
    cell = expand(smoke(tmp_path))[0]
    cell.__dict__["key"] = "0" * 20  # the key the driver computed with other code, carried with the cell
    record = bench_cell.run_cell(cell, check_key=True)
    assert record["status"] == "failed" and record["key"] == "0" * 20
    assert "CellKeyMismatchError" in record["error"] and "different code" in record["error"]


@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_local_and_ray_engines_agree(cache_dir, tmp_path):
    ray = pytest.importorskip("ray")
    grid = smoke(cache_dir, corruptions=["random"], discovery_rates=[0.5], methods=["none", "ga", "rem"])
    local = run_grid(grid, tmp_path / "local", engine=LocalEngine(1, threads=1), quiet=True)
    assert torch.get_num_threads() >= 1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_grid(grid, tmp_path / "ray", engine="ray", threads=1, quiet=True)
    finally:
        ray.shutdown()
    assert len(local) == len(remote) == 3
    assert all(r["status"] == "ok" for r in local + remote), [r["error"] for r in local + remote]
    assert {r["pid"] for r in remote}.isdisjoint({r["pid"] for r in local})  # really ran elsewhere
    by_key = {r["key"]: r["metrics"] for r in local}
    for r in remote:
        assert r["metrics"] == by_key[r["key"]], r["cell"]["method"]
