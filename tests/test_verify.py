"""``verify``: the stress tests tell a removed backdoor from a hidden one, on a planted task trained the way the
benchmark trains; the command works on a user's model and refuses bad outputs before any work."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import PLANTED_RECIPE, snapshot
from torch.nn import functional as F

from rem_unlearn import discovered_ids, unlearn
from rem_unlearn.config import ConfigError
from rem_unlearn.training import Batcher
from rem_unlearn.verify import StressTest, Verification, VerifyConfig, relearn_split, share_back, verify

pytestmark = pytest.mark.usefixtures("one_thread")  # the thresholds were measured on one thread


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def head_only_repair(model, data, known_rows, runtime):
    """A superficial repair: only the classifier head is trained to give the known poisoned images their true
    class (with clean images beside them).  The features still carry the trigger."""
    repaired = copy.deepcopy(model).eval().requires_grad_(False)
    head = [m for m in repaired.modules() if isinstance(m, torch.nn.Linear)][-1].requires_grad_(True)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    batcher = Batcher(data.train, runtime)
    clean = data.train.rows_except(known_rows)[:300]
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        x, _, _ = batcher.batch(known_rows)
        xc, yc, _ = batcher.batch(clean[torch.randint(0, len(clean), (64,), generator=g)])
        with runtime.autocast():
            loss = (F.cross_entropy(repaired(x).float(), data.true_labels[known_rows])
                    + F.cross_entropy(repaired(xc).float(), yc))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return repaired.requires_grad_(False)


@pytest.fixture(scope="module")
def retrained(poisoned, runtime, one_thread):
    """A model retrained from scratch without any poisoned sample (the recipe of the original)."""
    data, model, _ = poisoned
    return unlearn(model, data.train, data.corrupted_ids, "retrain", runtime=runtime, pretrain=PLANTED_RECIPE,
                   max_utility_drop=None).model.eval()


def test_a_clean_retrained_model_passes_and_the_trained_model_is_not_healed(poisoned, retrained, runtime):
    data, model, evaluate = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    before = state(model), state(retrained)
    clean = verify(model, retrained, data.train, known, runtime=runtime)
    assert clean.verdict == "removed", clean.lines()
    assert [t.name for t in clean.tests] == ["relearn", "recalibrate", "views", "trigger"]
    assert all(t.passed is not False for t in clean.tests), clean.lines()  # none came back
    relearn = clean.tests[0]
    assert relearn.passed and clean.tests[1].passed, clean.lines()  # measured, and held
    assert relearn.rows == len(known) - 10 and relearn.original >= 90 and relearn.repaired <= 40, clean.lines()
    untouched = verify(model, model, data.train, known, runtime=runtime, config={"tests": ["views"]})
    assert untouched.verdict == "not healed" and untouched.stored_repaired >= 90
    for m, saved in zip((model, retrained), before):
        assert all(torch.equal(v, saved[k]) for k, v in m.state_dict().items())  # neither model was modified
    assert not model.training and not retrained.training


def test_relearning_brings_back_a_backdoor_hidden_by_the_head(poisoned, runtime):
    data, model, evaluate = poisoned
    known = discovered_ids(data.corrupted_ids, 0.5, seed=0)
    hidden = head_only_repair(model, data, data.train.rows_of(known), runtime)
    assert evaluate(hidden)["attack_success"] <= 20  # it looks healed
    result = verify(model, hidden, data.train, known, runtime=runtime)
    relearn = {t.name: t for t in result.tests}["relearn"]
    assert relearn.passed is False and relearn.repaired >= 80, result.lines()
    assert result.verdict == "suppressed"
    assert "CAME BACK" in "\n".join(result.lines())


def test_a_reference_model_sets_the_relearn_baseline(poisoned, retrained, runtime):
    data, model, _ = poisoned
    known = discovered_ids(data.corrupted_ids, 1.0, seed=0)
    result = verify(model, retrained, data.train, known, reference=retrained, runtime=runtime,
                    config={"tests": ["relearn"]})
    relearn = result.tests[0]
    assert relearn.reference == relearn.repaired == relearn.baseline and relearn.share == 0.0


def test_the_trigger_is_estimated_from_the_known_images_and_moved(poisoned, noisy, runtime):
    """The planted 3x3 patch is found in the bottom-right corner; moved a few pixels it still fires on the
    trained model; random labels share neither a patch nor a label, and the test says nothing."""
    from rem_unlearn.verify import clean_rows, estimated_trigger, trigger_fit

    data, model, _ = poisoned
    cfg = VerifyConfig()
    batcher = Batcher(data.train, runtime)
    known = data.train.rows_of(discovered_ids(data.corrupted_ids, 0.5, seed=0))
    clean = clean_rows(data.train, known, cfg)
    trigger = estimated_trigger(batcher, known, clean, cfg)
    assert trigger is not None and trigger.target == 0 and int(trigger.mask.sum()) == 9
    assert (trigger.top, trigger.left) == (25, 25)
    assert trigger_fit(model, batcher, clean, trigger, cfg, moved=False) >= 95
    assert trigger_fit(model, batcher, clean, trigger, cfg, moved=True) >= 15  # it fires a few pixels away too (28 %)
    data, model, _ = noisy
    known = data.train.rows_of(discovered_ids(data.corrupted_ids, 0.5, seed=0))
    assert estimated_trigger(Batcher(data.train, runtime), known, clean_rows(data.train, known, cfg), cfg) is None
    result = verify(model, model, data.train, data.train.ids[known], runtime=runtime, config={"tests": ["trigger"]})
    assert result.tests[0].share is None and "says nothing" in result.tests[0].line()


def test_share_and_when_a_test_says_nothing():
    cfg = VerifyConfig()
    assert share_back(60.0, 10.0, 110.0, 20, cfg) == (0.5, False)
    assert share_back(30.0, 10.0, 110.0, 20, cfg) == (0.2, True)
    assert share_back(30.0, 10.0, 25.0, 20, cfg) == (None, None)  # the stressed original is within min_gap
    assert share_back(30.0, 10.0, 110.0, 4, cfg) == (None, None)  # too few rows to measure
    mixed, measured = relearn_split(torch.arange(7), cfg)
    assert len(mixed) == 3 and len(measured) == 4 and not set(mixed.tolist()) & set(measured.tolist())
    with pytest.raises(ConfigError, match="choose from: relearn, recalibrate, views"):
        VerifyConfig(tests=["relearn", "nope"]).validate()
    close = Verification(100, 100.0, 2.0, [StressTest("relearn", 90, 100.0, 49.0, 2.0, None, 0.48, True)], "removed",
                         0.0, {"threshold": 0.5})
    assert close.lines()[-1] == "verdict: removed (relearn came 48 % of the way back; the line is 50 %)"
    clear = Verification(100, 100.0, 2.0, [StressTest("relearn", 90, 100.0, 12.0, 2.0, None, 0.1, True)], "removed",
                         0.0, {"threshold": 0.5})
    assert clear.lines()[-1] == "verdict: removed"


# ----------------------------------------------------------------------------- the verify command


def verify_cli(setup: dict, *extra: str) -> int:
    from rem_unlearn.cli import main

    return main(["verify", "--model", f"{setup['nets']}:Net", "--checkpoint", str(setup["ckpt"]),
                 "--train-data", str(setup["npz"]), "--forget-ids", str(setup["forget"]), *extra])


@pytest.fixture
def repaired_file(user_setup):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(user_setup["ckpt"]))
    weights = {k: v + 0.01 * torch.randn_like(v) for k, v in weights.items()}
    path = user_setup["root"] / "repaired.safetensors"
    save_file(weights, str(path))
    return path


def test_verify_cli_on_a_user_model_prints_and_writes_the_verdict(user_setup, repaired_file, capsys):
    out = user_setup["root"] / "verification.json"
    rc = verify_cli(user_setup, "--repaired", str(repaired_file), "--reference", str(repaired_file),
                    "--json", str(out))
    printed = capsys.readouterr()
    assert rc in (0, 4), printed.err
    assert "verdict: " in printed.out and "relearn:" in printed.out and "views:" in printed.out
    text = out.read_text()
    assert "NaN" not in text  # three known ids: the tests say nothing, and the file stays strict JSON
    result = json.loads(text)
    assert result["verdict"] in ("removed", "suppressed", "not healed") and result["known"] == 3
    assert rc == (0 if result["verdict"] == "removed" else 4)
    assert [t["name"] for t in result["tests"]] == ["relearn", "recalibrate", "views", "trigger"]


@pytest.mark.parametrize("extra, message", [
    (["--json", "verification.txt"], "ending in .json"),
    (["--json", "forget.txt"], "is an input"),
    (["--json", "repaired.safetensors"], "is an input"),
    (["--set", "tests=[nope]"], "choose from: relearn, recalibrate, views"),
    (["--repaired", "missing.safetensors"], "missing.safetensors"),
])
def test_verify_cli_refuses_before_any_work(user_setup, repaired_file, capsys, extra, message):
    root = user_setup["root"]
    extra = [str(root / e) if e.endswith((".txt", ".json", ".safetensors")) else e for e in extra]
    args = extra if "--repaired" in extra else ["--repaired", str(repaired_file), *extra]
    before = snapshot(root)
    assert verify_cli(user_setup, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert snapshot(root) == before
