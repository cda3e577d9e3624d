import math

import pytest
import torch

from rem_unlearn.api import ForgetIdError, forget_rows, unlearn
from rem_unlearn.methods.base import ProxySelector, UnlearnContext, dpo_fit, npo_removal, per_sample_ce
from rem_unlearn.methods.rem import REM, REMConfig
from rem_unlearn.models import ResNet9, partition, partition_state
from rem_unlearn.training import Runtime, train_model
from rem_unlearn.config import RuntimeConfig, TrainConfig

from conftest import make_toy

RT = {"progress": False}


def trained_toy_model(data, epochs=3):
    torch.manual_seed(0)
    model = ResNet9(data.num_classes, 1, width=0.125)
    cfg = TrainConfig(epochs=epochs, augment=False)
    cfg.optim.batch_size, cfg.optim.lr = 32, 0.05
    train_model(model, data, cfg, Runtime.from_config())
    return model


def test_loss_terms_hand_computed():
    ce = torch.tensor([2.0, 0.5])
    ce_ref = torch.tensor([1.0, 1.5])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_rm = [-2 * math.log(sig(1.0)), -2 * math.log(sig(-1.0))]
    expected_rd = [2 * math.log(sig(1.0)), 2 * math.log(sig(-1.0))]
    torch.testing.assert_close(npo_removal(ce, ce_ref, 1.0), torch.tensor(expected_rm))
    torch.testing.assert_close(dpo_fit(ce, ce_ref, 1.0), torch.tensor(expected_rd))
    beta = 2.0  # -(2/b) log s(b d)
    torch.testing.assert_close(npo_removal(ce, ce_ref, beta)[0], torch.tensor(-(2 / beta) * math.log(sig(beta * 1.0))))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    manual = torch.tensor([math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(1.0))])
    torch.testing.assert_close(per_sample_ce(logits, y), manual)


def test_repair_loss_matches_hand_computation():
    data = make_toy(n=64)
    model = ResNet9(4, 1, width=0.125).eval()
    partition_state(model).p_mem = 0.2
    ref = ResNet9(4, 1, width=0.125).eval()
    partition_state(ref).p_mem = 0.2
    rt = Runtime.from_config(RuntimeConfig(precision="fp32"))
    x = torch.randn(6, 1, 12, 12)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ids = torch.arange(100, 106)
    routed = torch.tensor([101, 104])
    loss = REM(REMConfig()).repair_loss(model, ref, x, y, ids, routed, rt)
    with torch.no_grad():
        with partition(model, "shared", ids=ids, shared_ids=routed):
            ce_m = per_sample_ce(model(x), y)
        with partition(ref, "shared", ids=ids, shared_ids=routed):
            ce_r = per_sample_ce(ref(x), y)
        f = torch.tensor([False, True, False, False, True, False])
        ce_d = per_sample_ce(model(x[f]), y[f])
        ce_rd = per_sample_ce(ref(x[f]), y[f])
    expected = (dpo_fit(ce_m, ce_r, 1.0).sum() + npo_removal(ce_d, ce_rd, 1.0).sum()) / 6
    torch.testing.assert_close(loss.detach(), expected, atol=1e-5, rtol=1e-5)


def test_flush_stops_at_gamma():
    data = make_toy(n=256)
    model = trained_toy_model(data)
    forget = data.ids[:24]
    rt = Runtime.from_config()
    rows = forget_rows(data, forget)
    keep = torch.ones(len(data), dtype=torch.bool)
    keep[rows] = False
    cfg = REMConfig(epochs=1, gamma=0.2)
    cfg.optim.batch_size = 32
    ctx = UnlearnContext(model, data, rows, torch.nonzero(keep).flatten(), rt, cfg)
    assert ctx.forget_accuracy(model) > 0.2
    partition_state(model).p_mem = 0.2
    ref = __import__("copy").deepcopy(model).eval()
    rem = REM(cfg)
    trainer = ctx.trainer()
    steps = rem.flush(ctx, model, ref, trainer)
    assert steps > 0 and trainer.steps == 0  # flush steps are outside the budget
    assert ctx.forget_accuracy(model) <= 0.2
    assert rem.flush(ctx, model, ref, trainer) == 0  # already below gamma: nothing to do


def test_rem_returns_model_not_worse_on_proxy(toy):
    model = trained_toy_model(toy)
    forget = toy.ids[:24]
    result = unlearn(model, toy, forget, "rem", epochs=2, optim={"batch_size": 64}, runtime=RT)
    proxies = [h for h in result.history if h.get("event") == "proxy"]
    start = proxies[0]["proxy"]
    selected = [h for h in result.history if h.get("event") == "selected"][0]
    assert selected["proxy"] >= start
    assert selected["proxy"] == max(p["proxy"] for p in proxies)


def test_selector_returns_a_copy_of_the_original_when_nothing_beats_it(toy):
    model = trained_toy_model(toy)
    rows = torch.arange(24)
    ctx = UnlearnContext(model, toy, rows, torch.arange(24, len(toy)), Runtime.from_config(), REMConfig())
    selector = ProxySelector(ctx, model)
    worse = __import__("copy").deepcopy(model)
    with torch.no_grad():
        worse.fc.weight.neg_()  # ranks the classes backwards: keeps (almost) nothing
    selector.consider(worse, "round 1")
    best = selector.result(worse)
    assert selector.best_label == "start" and best is not model
    for k, v in model.state_dict().items():
        assert torch.equal(best.state_dict()[k], v)
    with torch.no_grad():  # a real copy: changing the live model does not change the pick
        next(model.parameters()).add_(1.0)
    assert not torch.equal(next(best.parameters()), next(model.parameters()))


def test_input_model_untouched_and_export(toy):
    model = trained_toy_model(toy)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = unlearn(model, toy, toy.ids[:24], "rem", epochs=1, optim={"batch_size": 64}, runtime=RT)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert partition_state(model).p_mem == 0.0  # expansion happened on the copy only
    small = result.discard().eval()
    x = torch.randn(5, 1, 12, 12)
    result.model.eval()
    torch.testing.assert_close(small(x), result.model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ids, message", [
    ([], "empty"),
    ([100, 100, 101], "duplicated"),
    ([5], "not in the training set"),
    ([100, 10**6], "not in the training set"),
    ([100.5], "integers"),
])
def test_bad_forget_ids(toy, ids, message):
    with pytest.raises(ForgetIdError, match=message):
        unlearn(ResNet9(4, 1, width=0.125), toy, torch.tensor(ids), "rem", runtime=RT)


def test_unknown_method_and_override(toy):
    with pytest.raises(ValueError, match="registered methods: .*rem"):
        unlearn(ResNet9(4, 1, width=0.125), toy, toy.ids[:3], "rem2")
    with pytest.raises(ValueError, match="valid keys: .*gamma"):
        unlearn(ResNet9(4, 1, width=0.125), toy, toy.ids[:3], "rem", gama=0.1)


def test_rem_ideal_needs_oracle(toy):
    with pytest.raises(ValueError, match="oracle"):
        unlearn(ResNet9(4, 1, width=0.125), toy, toy.ids[:3], "rem-ideal", epochs=1, runtime=RT)
