"""Discovery: every scorer finds planted samples in a tiny set, the stopping rule, and bad inputs.

The planted sets are tiny (a few hundred 12x12 images) and the models train in
seconds; each test asserts that the planted samples the scorer was *not* told
about rank above the clean ones, which a scorer that ignores its input fails.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_toy, snapshot
from rem_unlearn.api import forget_rows
from rem_unlearn.cli import main
from rem_unlearn.config import ConfigError, OptimConfig, TrainConfig
from rem_unlearn.discovery import (MissingExtraError, choose_k, discover, make_scorer, scorer_names)
from rem_unlearn.discovery.stopping import estimate_size
from rem_unlearn.ids import ForgetIdError, read_ids
from rem_unlearn.models import SmallCNN
from rem_unlearn.training import Runtime, train_model

RUNTIME = Runtime.from_config(None)
RECIPE = TrainConfig(epochs=8, augment=False, optim=OptimConfig(lr=0.05, batch_size=32))
N_PLANTED = 16


def planted(kind: str):
    """(train set as stored, planted ids): a trigger patch labelled 0, or random wrong labels."""
    data = make_toy(n=320, classes=4, seed=1)
    g = torch.Generator().manual_seed(0)
    rows = torch.nonzero(data.labels != 0).flatten()
    rows = rows[torch.randperm(len(rows), generator=g)[:N_PLANTED]]
    labels = data.labels.clone()
    if kind == "poison":
        triggered = data.triggered.clone()
        labels[rows], triggered[rows] = 0, True
        data = replace(data, labels=labels, triggered=triggered, trigger_size=3)
    else:
        labels[rows] = (labels[rows] + torch.randint(1, 4, (len(rows),), generator=g)) % 4
        data = replace(data, labels=labels)
    return data, torch.sort(data.ids[rows]).values


@pytest.fixture(scope="module")
def poison():
    data, ids = planted("poison")
    torch.manual_seed(0)
    model = SmallCNN(4, 1, width=0.25)
    train_model(model, data, RECIPE, RUNTIME)
    return model, data, ids


@pytest.fixture(scope="module")
def underfit_on_noise():
    data, ids = planted("random")
    torch.manual_seed(0)
    model = SmallCNN(4, 1, width=0.25)
    train_model(model, data, replace(RECIPE, epochs=3), RUNTIME)  # short: the wrong labels are not memorised
    return model, data, ids


def unfound_rank_share(result, planted_ids, known) -> float:
    """Share of the planted ids the scorer was not told about that rank within the top 2 x |planted|."""
    unfound = planted_ids[~torch.isin(planted_ids, known)]
    top = result.ids[:2 * len(planted_ids)]
    return float(torch.isin(unfound, top).float().mean())


@pytest.mark.parametrize("scorer", ["nearest", "similarity", "spectral", "rem-transfer", "auto"])
def test_scorers_find_a_planted_backdoor(poison, scorer):
    model, data, ids = poison
    known = ids[:4]
    kwargs = {"epochs": 0.5} if scorer == "rem-transfer" else {}
    result = discover(model, data, known, scorer, runtime=RUNTIME, **kwargs)
    assert torch.equal(torch.sort(result.ids[:len(known)]).values, known)  # the known ids come first
    assert sorted(result.ids.tolist()) == sorted(data.ids.tolist())
    assert unfound_rank_share(result, ids, known) >= 0.75
    assert len(known) <= result.k <= len(data)


@pytest.mark.parametrize("scorer", ["knn-label", "confident-learning"])
def test_label_noise_scorers_find_planted_wrong_labels(underfit_on_noise, scorer):
    if scorer == "confident-learning":
        pytest.importorskip("cleanlab")
    model, data, ids = underfit_on_noise
    known = ids[:4]
    kwargs = {"folds": 2, "epochs": 3} if scorer == "confident-learning" else {}
    result = discover(model, data, known, scorer, runtime=RUNTIME, pretrain=RECIPE, **kwargs)
    assert unfound_rank_share(result, ids, known) >= 0.75


def test_the_model_is_not_modified(poison):
    model, data, ids = poison
    before = {k: v.clone() for k, v in model.state_dict().items()}
    discover(model, data, ids[:4], "similarity", runtime=RUNTIME)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_budget_and_selected(poison):
    model, data, ids = poison
    result = discover(model, data, ids[:4], "similarity", budget=10, runtime=RUNTIME)
    assert result.k == 10 and result.rule == "budget"
    assert torch.equal(result.selected, torch.sort(result.ids[:10]).values)
    precision, recall = result.precision_recall(ids)
    assert precision == 100.0 * int(torch.isin(result.selected, ids).sum()) / 10


# ----------------------------------------------------------------------------- the stopping rule


def test_stopping_rule_cuts_at_a_clear_gap():
    values = torch.cat([torch.full((4,), 9.0), 5.0 + torch.rand(30), torch.rand(500)])  # 4 known, 30 planted
    pool = torch.ones(len(values), dtype=torch.bool)
    pool[:4] = False
    held_out = torch.tensor([3, 11, 20, 27])  # where the known ones sat among the unknown when held out
    stop = choose_k(values, pool, held_out)
    assert (stop.k, stop.rule) == (34, "gap")


def test_size_estimate_from_held_out_ranks():
    # 19 known ids spread evenly over 100 unfound ones: the estimate is about 100.
    held_out = torch.arange(1, 20) * 5
    assert 90 <= estimate_size(held_out, 1000) <= 110
    assert estimate_size(held_out, 50) == 50  # never more than there are unknown samples


@settings(max_examples=60, deadline=None)
@given(n=st.integers(30, 200), known=st.integers(1, 20), seed=st.integers(0, 10_000),
       ties=st.booleans())
def test_stopping_rule_never_returns_an_empty_set(n, known, seed, ties):
    g = torch.Generator().manual_seed(seed)
    values = torch.zeros(n) if ties else torch.randn(n, generator=g)
    pool = torch.ones(n, dtype=torch.bool)
    pool[torch.randperm(n, generator=g)[:known]] = False
    held_out = torch.randint(0, n - known + 1, (known,), generator=g)
    stop = choose_k(values, pool, held_out)
    assert known <= stop.k <= n


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("ids", [[], [100, 100], [5], [100.5], ["a"]])
def test_bad_known_ids_get_the_errors_of_unlearn(poison, ids):
    model, data, _ = poison
    with pytest.raises(ForgetIdError) as expected:
        forget_rows(data, ids)
    with pytest.raises(ForgetIdError) as got:
        discover(model, data, ids, "similarity", runtime=RUNTIME)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"scorer": "nope"}, "unknown scorer 'nope'"),
    ({"scorer": "similarity", "neighbours": 3}, "unknown key"),
    ({"scorer": "similarity", "budget": 2}, "budget must be between"),
    ({"scorer": "ensemble", "members": ["similarity", "ensemble"]}, "cannot contain itself"),
])
def test_bad_scorer_settings(poison, kwargs, message):
    model, data, ids = poison
    with pytest.raises(ConfigError, match=message):
        discover(model, data, ids[:4], runtime=RUNTIME, **kwargs)


def test_missing_extra_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    monkeypatch.setitem(sys.modules, "cleanlab.rank", None)
    with pytest.raises(MissingExtraError, match=r"rem-unlearn\[detect\]"):
        make_scorer("confident-learning")
    with pytest.raises(MissingExtraError):
        make_scorer("ensemble", {"members": ["similarity", "confident-learning"]})
    assert "confident-learning" in scorer_names()  # listed; only using it needs the extra


# ----------------------------------------------------------------------------- the command


def discover_cli(setup: dict, *extra: str) -> int:
    return main(["discover", "--model", f"{setup['nets']}:Net", "--checkpoint", str(setup["ckpt"]),
                 "--train-data", str(setup["npz"]), "--forget-ids", str(setup["forget"]), *extra])


def test_cli_writes_ids_that_unlearn_reads(user_setup, capsys):
    root = user_setup["root"]
    rc = discover_cli(user_setup, "--scorer", "similarity", "--budget", "7", "--out", str(root / "found.txt"),
                      "--ranking", str(root / "ranking.csv"))
    assert rc == 0, capsys.readouterr().err
    found = read_ids(root / "found.txt")
    assert len(found) == 7 and torch.isin(read_ids(user_setup["forget"]), found).all()
    lines = (root / "ranking.csv").read_text().splitlines()
    assert lines[0] == "id,score,rank" and len(lines) == 61
    assert {int(line.split(",")[0]) for line in lines[1:4]} == {1000, 1003, 1006}  # the known ids rank first


@pytest.mark.parametrize("change, message", [
    ({"out": "forget"}, "is an input"),
    ({"out": "found.csv"}, "ending in .txt"),
    ({"out": "exists.txt"}, "already exists"),
    ({"ranking": "r.txt"}, "ending in .csv"),
    ({"forget": "unknown.txt"}, "not in the training set"),
    ({"set": "nope=1"}, "unknown key"),
])
def test_cli_refuses_before_any_work(user_setup, capsys, change, message):
    root = user_setup["root"]
    (root / "exists.txt").write_text("1\n")
    (root / "unknown.txt").write_text("1000\n5\n")
    setup = dict(user_setup)
    if "forget" in change:
        setup["forget"] = root / change["forget"]
    out = user_setup["forget"] if change.get("out") == "forget" else root / change.get("out", "found.txt")
    extra = ["--out", str(out), "--scorer", "similarity"]
    if "ranking" in change:
        extra += ["--ranking", str(root / change["ranking"])]
    if "set" in change:
        extra += ["--set", change["set"]]
    before = snapshot(root)
    assert discover_cli(setup, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert snapshot(root) == before


def test_cli_unknown_ids_match_unlearn(user_setup, capsys):
    root = user_setup["root"]
    (root / "bad.txt").write_text("1000\n7\n")
    setup = {**user_setup, "forget": root / "bad.txt"}
    assert discover_cli(setup, "--out", str(root / "a.txt"), "--scorer", "similarity") == 2
    discovered = capsys.readouterr().err.split("error: ", 1)[1]
    assert main(["unlearn", "--model", f"{setup['nets']}:Net", "--checkpoint", str(setup["ckpt"]),
                 "--train-data", str(setup["npz"]), "--forget-ids", str(root / "bad.txt"),
                 "--out", str(root / "m.safetensors")]) == 2
    assert capsys.readouterr().err.split("error: ", 1)[1] == discovered


# ----------------------------------------------------------------------------- the benchmark


def smoke_grid(cache: Path, **changes):
    from rem_unlearn.bench import GridConfig, grid_preset
    from rem_unlearn.config import load_config

    data = grid_preset("smoke")
    data["experiment_overrides"]["runtime"] = {"cache_dir": str(cache)}
    data.update(corruptions=["poison"], discovery_rates=[0.5], methods=["none", "ga"], **changes)
    return load_config(GridConfig, base=data)


def test_detected_cells_keep_uniform_keys(tmp_path):
    from rem_unlearn.bench import cell_key, expand
    from rem_unlearn.bench.grid import grid_dict

    plain = smoke_grid(tmp_path)
    both = smoke_grid(tmp_path, discovery_modes=["uniform", "detected"], scorers=["similarity", "nearest"])
    uniform = [c for c in expand(both) if not c.detected]
    detected = [c for c in expand(both) if c.detected]
    assert [cell_key(c) for c in uniform] == [cell_key(c) for c in expand(plain)]  # old records stay valid
    assert [(c.method, c.scorer) for c in detected] == [("ga", "similarity"), ("ga", "nearest")]  # none: no forget set
    assert len({cell_key(c) for c in expand(both)}) == 4
    assert not {"discovery_modes", "scorers", "scorer_overrides"} & set(grid_dict(plain))  # old grid.json still equal
    other = smoke_grid(tmp_path, discovery_modes=["detected"], scorers=["similarity"],
                       scorer_overrides={"similarity": {"seed": 5}})
    assert cell_key(expand(other)[0]) != cell_key(detected[0])


@pytest.mark.parametrize("changes, message", [
    ({"discovery_modes": ["guessed"]}, "not a discovery mode"),
    ({"discovery_modes": ["detected"], "scorers": ["nope"]}, "unknown scorer(s) 'nope'"),
    ({"discovery_modes": ["detected"], "scorer_overrides": {"similarity": {"k": 1}}}, "unknown key"),
])
def test_discovery_grid_validation(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        smoke_grid(tmp_path, **changes).validate()


def test_smoke_grid_with_detection(tmp_path):
    from rem_unlearn.bench import run_grid

    grid = smoke_grid(tmp_path / "cache", discovery_modes=["uniform", "detected"], scorers=["similarity"])
    records = run_grid(grid, tmp_path / "results", quiet=True)
    assert [r["status"] for r in records] == ["ok"] * 3, [r.get("error") for r in records]
    by = {(r["cell"]["method"], r["cell"].get("scorer")): r for r in records}
    uniform, detected = by[("ga", None)], by[("ga", "similarity")]
    assert uniform["metrics"]["forget_precision"] == 100.0 and uniform["metrics"]["forget_recall"] == 50.0
    assert detected["cell"]["discovery_mode"] == "detected" and detected["discovery"]["scorer"] == "similarity"
    assert detected["n_forget"] >= detected["n_known"] == uniform["n_forget"]
    assert 0 < detected["metrics"]["forget_precision"] <= 100 and detected["metrics"]["forget_recall"] >= 50.0
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "Discovery: the known ids extended by a scorer" in summary and "| similarity |" in summary
    assert (tmp_path / "results" / "heatmap_detected_score_fashion-mnist_capacity.png").is_file()
    assert "forget_precision" in (tmp_path / "results" / "results.csv").read_text().splitlines()[0]


def test_stopping_rule_stops_where_the_known_ids_thin_out():
    # No gap: the held-out known ids sit in the top 40 of 1000 unknown samples, one far below.
    g = torch.Generator().manual_seed(0)
    values = torch.cat([torch.full((10,), 9.0), torch.rand(1000, generator=g)])
    pool = torch.ones(len(values), dtype=torch.bool)
    pool[:10] = False
    held_out = torch.tensor([1.0, 5, 9, 14, 18, 22, 27, 31, 38, 700])
    stop = choose_k(values, pool, held_out)
    assert stop.rule == "f1" and 10 + 30 <= stop.k <= 10 + 45
