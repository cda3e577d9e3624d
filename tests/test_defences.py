"""The practitioner's alternatives on tiny planted tasks: the backdoor defences (ANP, i-BAU), CUTS, detect-then-unlearn
and ``advise``.  Each is checked on what it is for, with the model trained the way the benchmark trains (BatchNorm in
train mode, bf16 autocast where the runtime has it); quality claims are in the benchmark (docs/alternatives.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import PLANTED_RECIPE as RECIPE, snapshot

import rem_unlearn
from rem_unlearn import discovered_ids, unlearn
from rem_unlearn.advise import advise, place, ranking, regularity_probe
from rem_unlearn.methods.anp import batchnorms

pytestmark = pytest.mark.usefixtures("one_thread")  # the thresholds were measured on one thread


def test_the_planted_backdoor_and_labels_are_memorised(poisoned, noisy):
    data, model, evaluate = poisoned
    assert evaluate(model)["attack_success"] > 80
    data, model, evaluate = noisy
    assert evaluate(model)["healed"] < 20


# What each defence does to the planted backdoor in both autocasts the tests run in (bf16 on a CPU with native
# bf16, fp32 on one without).  The fp32 numbers in the comments are one thread on an AVX2 CPU, then under
# ONEDNN_MAX_CPU_ISA=AVX, then under SSE41 with ATEN_CPU_CAPABILITY=default.  Quality is the benchmark's.
@pytest.mark.parametrize("method, settings, removed, utility_cost", [
    # Attack success 99.6 -> 0.0 on AVX2.  What it costs in utility on this tiny task is decided by the rounding
    # alone: 15.2 points (AVX2), 20.5 (AVX), 34.3 (SSE41), 55.7 in emulated bf16; so it is not bounded here (in
    # use, the utility guard refuses such a result; this test switches it off).
    ("anp", {}, 30, None),
    # A quarter of i-BAU's cost: its 4-epoch budget runs 2 rounds.  Attack success 99.6 -> 84.6 (AVX2), 99.8 ->
    # 90.3 (SSE41); utility 78.2 -> 78.5, 78.5 -> 80.7
    ("ibau", {"rounds": 4, "inner_steps": 20, "outer_steps": 16, "neumann_terms": 2}, 5, 15),
    # The whole alpha scan (20 steps up to max_alpha): in fp32 the proxy stays at 0 up to alpha 0.5, where the
    # default patience stops the scan with nothing removed.  99.6 -> 37.1, utility 78.2 -> 74.7 (AVX2)
    ("cuts", {"alpha_step": 0.2, "patience": 20}, 30, 15)])
def test_backdoor_defences_remove_the_planted_backdoor(method, settings, removed, utility_cost, poisoned, runtime):
    data, model, evaluate = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    before = evaluate(model)
    result = unlearn(model, data.train, known, method, runtime=runtime, max_utility_drop=None, epochs=4, **settings)
    after = evaluate(result.model)
    assert after["attack_success"] <= before["attack_success"] - removed, (method, before, after)
    if utility_cost is not None:
        assert after["utility"] >= before["utility"] - utility_cost, (method, before, after)


def test_anp_and_ibau_train_on_a_sample_of_the_retain_set_only(poisoned, runtime, monkeypatch):
    """They are given clean data, a sample of D_r; D_f enters only the shared proxy's selection."""
    import rem_unlearn.methods.anp as anp
    import rem_unlearn.methods.ibau as ibau

    data, model, _ = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    seen: list[int] = []

    def tapped(original):
        def run_epoch(trainer, batches, loss_fn, **kwargs):
            def tap():
                for x, y, ids in batches:
                    seen.extend(ids.tolist())
                    yield x, y, ids
            return original(trainer, tap(), loss_fn, **kwargs)
        return run_epoch

    for module in (anp, ibau):
        monkeypatch.setattr(module, "run_epoch", tapped(module.run_epoch))
    perturbation = ibau.IBAU.universal_perturbation

    def universal_perturbation(self, ctx, model, rows):
        seen.extend(ctx.train.ids[rows].tolist())
        return perturbation(self, ctx, model, rows)

    monkeypatch.setattr(ibau.IBAU, "universal_perturbation", universal_perturbation)
    for method, settings in (("anp", {"iterations": 5}), ("ibau", {"rounds": 1, "inner_steps": 2, "outer_steps": 2})):
        seen.clear()
        unlearn(model, data.train, known, method, runtime=runtime, max_utility_drop=None, epochs=1,
                select_best=False, **settings)
        assert seen and not set(known.tolist()) & set(seen), method


def test_anp_prunes_by_zeroing_batchnorm_scales_only(poisoned, runtime):
    data, model, _ = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    out = unlearn(model, data.train, known, "anp", runtime=runtime, max_utility_drop=None, select_best=False,
                  iterations=30, threshold=0.9).model
    before, after = batchnorms(model), batchnorms(out)
    pruned = sum(int(((after[n].weight == 0) & (before[n].weight != 0)).sum()) for n in before)
    assert pruned > 0
    for n in before:
        changed = after[n].weight != before[n].weight
        assert torch.all(after[n].weight[changed] == 0) and torch.equal(after[n].bias, before[n].bias)
    rest = {k: v for k, v in out.state_dict().items() if not any(k.startswith(n + ".weight") for n in before)}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in rest.items())  # statistics included


def test_cuts_leaves_batchnorm_out_of_the_task_vector(poisoned, runtime):
    data, model, _ = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    out = unlearn(model, data.train, known, "cuts", runtime=runtime, max_utility_drop=None, alpha=1.0,
                  epochs=1).model
    norms = set(batchnorms(model))
    for k, v in out.state_dict().items():
        if k.rsplit(".", 1)[0] in norms:
            assert torch.equal(v, model.state_dict()[k]), k
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in out.state_dict().items())


def test_detect_retrain_heals_more_than_retrain_from_the_same_known_ids(noisy, runtime):
    data, model, evaluate = noisy
    known = discovered_ids(data.corrupted_ids, 0.3, seed=0)
    healed = {m: evaluate(unlearn(model, data.train, known, m, runtime=runtime, pretrain=RECIPE,
                                  max_utility_drop=None).model)["healed"] for m in ("retrain", "detect-retrain")}
    # One thread in fp32: retrain heals 28.3-31.7 %, detect-retrain 68.3 (AVX2), 53.3 (oneDNN at AVX), 38.3 (AVX
    # with scalar ATen: a CPU without AVX2), 65.0 (SSE41, scalar ATen); what the detection finds moves with the
    # rounding, so the test asks only that it heals more.
    assert healed["detect-retrain"] > healed["retrain"], healed


@pytest.mark.parametrize("rate", [0.1, 1.0])
def test_a_backdoor_keeps_its_label_on_shifted_views_and_random_labels_do_not(rate, poisoned, noisy, runtime):
    values = {}
    for name, (data, model, _) in {"poison": poisoned, "random": noisy}.items():
        rows = data.train.rows_of(discovered_ids(data.corrupted_ids, rate, seed=0))
        values[name] = regularity_probe(model, data.train, rows, runtime)
    assert values["poison"].value >= 0.85 and values["random"].value <= 0.5, values
    assert values["poison"].stored >= 90 and values["random"].stored >= 50, values  # both memorised


def test_advise_places_the_task_and_ranks_the_nearest_cell(poisoned, runtime):
    table = {"regularity": {"poison": 0.95, "interclass": 0.6, "random": 0.25},
             "cells": {kind: {f"{r:g}": {"rem": {"score": 50.0 + r, "sem": 1.0, "n": 3},
                                         "ga": {"score": 40.0, "sem": 1.0, "n": 3}} for r in (0.1, 0.5, 1.0)}
                       for kind in ("poison", "interclass", "random")},
             "source": {"experiment": "toy"}}
    data, model, _ = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = advise(model, data.train, known, runtime=runtime, table=table, scorer="similarity")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert result.corruption == "poison" and result.recommended == "rem"
    assert 0.0 < result.discovery_rate <= 1.0 and result.nearest_rate in (0.1, 0.5, 1.0)
    assert json.loads(json.dumps(result.to_dict()))["recommended"] == "rem"
    assert any("recommended: rem" in line for line in result.lines())


def test_place_and_ranking_read_the_table():
    table = {"regularity": {"poison": 0.9, "interclass": 0.4, "random": 0.05},
             "cells": {"random": {"0.1": {"a": {"score": 1.0, "sem": 0, "n": 1},
                                         "b": {"score": 2.0, "sem": 0, "n": 1}}},
                       "interclass": {"0.5": {}}, "poison": {"1": {}}}}
    assert place(table, 0.1, 0.9) == ("random", 0.1)
    assert place(table, 0.6, 0.2) == ("interclass", 0.5)
    assert place(table, float("nan"), 0.3) == ("random", 0.1)
    assert [r["method"] for r in ranking(table, "random", 0.1)] == ["b", "a"]


# ----------------------------------------------------------------------------- the advise command


def advise_cli(setup: dict, *extra: str) -> int:
    from rem_unlearn.cli import main

    return main(["advise", "--model", f"{setup['nets']}:Net", "--checkpoint", str(setup["ckpt"]),
                 "--train-data", str(setup["npz"]), "--forget-ids", str(setup["forget"]), "--scorer", "similarity",
                 *extra])


def test_advise_cli_on_a_user_model_prints_and_writes_the_advice(user_setup, capsys):
    out = user_setup["root"] / "advice.json"
    assert advise_cli(user_setup, "--json", str(out)) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "discovery rate: about" in printed and "regularity:" in printed and "recommended: " in printed
    advice = json.loads(out.read_text())
    table = json.loads((Path(rem_unlearn.__file__).parent / "bench" / "advice.json").read_text())
    assert advice["corruption"] in table["cells"] and advice["known"] == 3
    assert advice["recommended"] == advice["ranking"][0]["method"]
    assert advice["ranking"][0]["score"] == max(m["score"] for m in advice["ranking"])


@pytest.mark.parametrize("extra, message", [
    (["--json", "advice.txt"], "ending in .json"),
    (["--json", "forget.txt"], "is an input"),
    (["--scorer", "nope"], "invalid choice"),
])
def test_advise_cli_refuses_before_any_work(user_setup, capsys, extra, message):
    root = user_setup["root"]
    extra = [str(root / e) if e.endswith((".txt", ".json")) else e for e in extra]
    before = snapshot(root)
    try:
        rc = advise_cli(user_setup, *extra)
    except SystemExit as exit_:  # argparse's own errors (a bad choice)
        rc = exit_.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert snapshot(root) == before
