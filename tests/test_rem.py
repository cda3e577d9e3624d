import copy
import dataclasses
import math

import pytest
import torch

from rem_unlearn.api import ForgetIdError, forget_rows, unlearn
from rem_unlearn.methods.base import (ProxySelector, UnlearnConfig, UnlearnContext, capped_dpo_fit, dpo_fit,
                                     npo_removal, per_sample_ce)
from rem_unlearn.methods.registry import method_config
from rem_unlearn.methods.rem import REM, REMConfig, REMLabConfig, REMMechanics, REMOfficialConfig
from rem_unlearn.models import ResNet9, partition, partition_state
from rem_unlearn.training import Batcher, Runtime, train_model
from rem_unlearn.config import ConfigError, RuntimeConfig, TrainConfig

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


def memorised_noise(n: int = 128, epochs: int = 10):
    """Random images with random labels, memorised: forgetting some of them is a real change of weights."""
    from rem_unlearn.data.base import ImageDataset

    g = torch.Generator().manual_seed(2)
    data = ImageDataset("noise", torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=g),
                        torch.randint(0, 4, (n,), generator=g), torch.arange(n), 4, (0.5,), (0.25,))
    return data, trained_toy_model(data, epochs=epochs)


def _pair(train: bool):
    torch.manual_seed(0)
    model, ref = ResNet9(4, 1, width=0.125), ResNet9(4, 1, width=0.125).eval()
    for m in (model, ref):
        partition_state(m).p_mem = 0.2
    model.train(train)
    x = torch.randn(6, 1, 12, 12)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ids = torch.arange(100, 106)
    routed = torch.tensor([101, 104])
    return model, ref, x, y, ids, routed, Runtime.from_config(RuntimeConfig(precision="fp32"))


def _fit(model, ref, x, y, ids, routed, fit=dpo_fit):
    with partition(model, "shared", ids=ids, shared_ids=routed):
        ce_m = per_sample_ce(model(x), y)
    with torch.no_grad(), partition(ref, "shared", ids=ids, shared_ids=routed):
        ce_r = per_sample_ce(ref(x), y)
    return fit(ce_m, ce_r, 1.0)


def test_default_repair_loss_is_the_redirect_term():
    """Our REM moves the removal term to its own D_f mini-batch: the D_tr batch only carries the fit."""
    model, ref, x, y, ids, routed, rt = _pair(train=True)
    loss = REM(REMConfig()).repair_loss(model, ref, x, y, ids, routed, rt)
    expected = _fit(copy.deepcopy(model), ref, x, y, ids, routed, dpo_fit).mean()
    capped = REM(REMConfig(fit="dpo-capped")).repair_loss(model, ref, x, y, ids, routed, rt)
    torch.testing.assert_close(capped.detach(), _fit(copy.deepcopy(model), ref, x, y, ids, routed,
                                                     capped_dpo_fit).mean().detach())
    torch.testing.assert_close(loss.detach(), expected.detach())


def test_official_repair_loss_is_the_whole_batch_loss_in_training():
    """rem-official: the removal term comes from a drop-mode pass over the whole batch in train-mode BN,
    kept for the routed rows and averaged over the batch, as the official code computes it."""
    model, ref, x, y, ids, routed, rt = _pair(train=True)
    twin = copy.deepcopy(model)
    loss = REM(REMOfficialConfig()).repair_loss(model, ref, x, y, ids, routed, rt)
    f = torch.isin(ids, routed)
    with torch.no_grad():
        fit = _fit(twin, ref, x, y, ids, routed)
        removal = npo_removal(per_sample_ce(twin(x), y), per_sample_ce(ref(x), y), 1.0)
    torch.testing.assert_close(loss.detach(), (fit.sum() + removal[f].sum()) / 6, atol=1e-5, rtol=1e-5)


def test_removal_on_forget_rows_alone_is_another_loss_in_training():
    """Why the old shortcut was wrong: with BatchNorm in train mode, D_f's rows run without the rest of
    their batch give other losses (an eval-mode test cannot see this).  Our removal pass normalises with
    the running statistics, so a row's loss does not depend on what else is in its batch."""
    model, ref, x, y, ids, routed, rt = _pair(train=True)
    f = torch.isin(ids, routed)
    with torch.no_grad():
        whole = per_sample_ce(model(x), y)[f]
        alone = per_sample_ce(model(x[f]), y[f])
    assert (whole - alone).abs().max() > 1e-3
    rem = REM(REMConfig())
    with torch.no_grad():
        single = [rem.removal_step_loss(model, ref, x[i:i + 1], y[i:i + 1], rt) for i in range(6)]
        pair = rem.removal_step_loss(model, ref, x[f], y[f], rt)
        other_pair = rem.removal_step_loss(model, ref, x[[1, 0]], y[[1, 0]], rt)
    torch.testing.assert_close(pair, (single[1] + single[4]) / 2)
    torch.testing.assert_close(other_pair, (single[1] + single[0]) / 2)
    assert model.training  # the pass froze BatchNorm for itself only


def test_in_batch_removal_is_the_forget_rows_pass_with_frozen_batchnorm_in_training():
    """removal_every_step=false with drop_mode_batchnorm: the removal term of the batch's D_f rows runs on
    those rows alone, through BN's running statistics, summed and averaged over the whole batch.  In train
    mode this is the same loss whatever else the batch holds (the fit pass before it moves the statistics,
    in the model and its twin)."""
    model, ref, x, y, ids, routed, rt = _pair(train=True)
    rem = REM(REMLabConfig(mechanics=REMMechanics(removal_every_step=False)))
    twin = copy.deepcopy(model)
    loss = rem.repair_loss(model, ref, x, y, ids, routed, rt)
    f = torch.isin(ids, routed)
    with torch.no_grad():
        fit = _fit(twin, ref, x, y, ids, routed)
        twin.eval()  # the running statistics, as the frozen pass uses them
        removal = npo_removal(per_sample_ce(twin(x), y), per_sample_ce(ref(x), y), 1.0)
    assert model.training
    torch.testing.assert_close(loss.detach(), (fit.sum() + removal[f].sum()) / 6, atol=1e-5, rtol=1e-5)
    # a batch-statistics pass over the whole batch (the official scheme) gives another number here
    with torch.no_grad():
        whole = npo_removal(per_sample_ce(copy.deepcopy(model)(x), y), per_sample_ce(ref(x), y), 1.0)
    assert (whole[f] - removal[f]).abs().max() > 1e-3


def test_flush_keeps_batchnorm_statistics():
    """The flush trains on batches of D_f alone: with train-mode BN they would move the running statistics
    (and could hide the corruption in them); REM's flush leaves them exactly as they were."""
    data, model = memorised_noise()
    rows = forget_rows(data, data.ids[:16])
    cfg = REMConfig(epochs=1)
    cfg.optim.batch_size, cfg.optim.lr = 32, 0.05
    ctx = UnlearnContext(model, data, rows, data.rows_except(rows), Runtime.from_config(), cfg)
    before = copy.deepcopy(model.state_dict())
    assert REM(cfg).flush(ctx, model, copy.deepcopy(model).eval(), ctx.trainer()) > 0
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if "running" in k)
    assert any(not torch.equal(after[k], v) for k, v in before.items() if "running" not in k)


def test_flush_stops_at_gamma():
    data, model = memorised_noise()
    forget = data.ids[:16]
    rt = Runtime.from_config()
    rows = forget_rows(data, forget)
    cfg = REMConfig(epochs=1, gamma=0.2)
    cfg.optim.batch_size, cfg.optim.lr = 32, 0.05
    ctx = UnlearnContext(model, data, rows, data.rows_except(rows), rt, cfg)
    assert ctx.forget_accuracy(model) > 0.2
    partition_state(model).p_mem = 0.2
    ref = copy.deepcopy(model).eval()
    rem = REM(cfg)
    trainer = ctx.trainer()
    lr = trainer.optimizer.param_groups[0]["lr"]
    steps = rem.flush(ctx, model, ref, trainer)
    assert steps > 0 and trainer.steps == 0  # flush steps are outside the budget ...
    assert trainer.scheduler.last_epoch == 0 and trainer.optimizer.param_groups[0]["lr"] == lr  # ... and schedule
    assert ctx.forget_accuracy(model) <= 0.2
    assert rem.flush(ctx, model, ref, trainer) == 0  # already below gamma: nothing to do


def test_rem_returns_model_not_worse_on_proxy(toy):
    model = trained_toy_model(toy)
    forget = toy.ids[:24]
    result = unlearn(model, toy, forget, "rem", epochs=2, optim={"batch_size": 64}, runtime=RT,
                     max_utility_drop=None)  # the proxy's own pick, whatever it costs
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


def test_full_budget_runs_every_round():
    data, model = memorised_noise()
    kw = dict(epochs=4, optim={"batch_size": 32, "lr": 0.05}, runtime=RT, max_utility_drop=None)  # memorised noise
    full = unlearn(model, data, data.ids[:16], "rem", patience=None, **kw)
    assert [h["event"] for h in full.history].count("round") == 4


def test_stopping_rule_stops_after_a_round_without_improvement(monkeypatch):
    """patience=1: once a round does not beat the best proxy and D_f (as stored) is forgotten, REM stops and
    returns the best round.  The proxy's values are scripted so that the rule must fire; the run is real."""
    measured = ProxySelector.proxy
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.2])  # start, round 1 (the best), then only worse rounds

    def proxy(self, model, label=""):
        measured(self, model, label)
        self.last_forget = {**self.last_forget, "stored": 0.0}
        return next(scripted)

    monkeypatch.setattr(ProxySelector, "proxy", proxy)
    data, model = memorised_noise()
    early = unlearn(model, data, data.ids[:16], "rem", patience=1, epochs=4,
                    optim={"batch_size": 32, "lr": 0.05}, runtime=RT, max_utility_drop=None)
    stopped = [h for h in early.history if h["event"] == "stopped"]
    assert [h["event"] for h in early.history].count("round") == 2
    assert stopped and stopped[0]["round"] == 2 and stopped[0]["rounds_without_improvement"] == 1
    assert early.selected == "round 1"


def test_recalibrated_statistics_are_the_average_of_the_batches():
    from torch import nn
    from rem_unlearn.training import Batcher, recalibrate_batchnorm

    data = make_toy(n=96)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.LazyLinear(4))
    rt = Runtime.from_config(RuntimeConfig(precision="fp32", channels_last=False))
    batcher = Batcher(data, rt)
    model(batcher.batch(torch.arange(2))[0])  # materialise the lazy layer
    model[1].running_mean.fill_(5.0)
    model.eval()
    assert recalibrate_batchnorm(model, batcher, torch.arange(96), batch_size=32) == 96
    with torch.no_grad():
        conv = model[0](batcher.batch(torch.arange(96))[0])
    torch.testing.assert_close(model[1].running_mean, conv.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    assert not model.training and model[1].momentum == 0.1  # mode and momentum restored


def test_fresh_capacity_reinitialises_only_what_drop_mode_never_uses():
    from rem_unlearn.methods.rem import fresh_capacity

    data = make_toy(n=64)
    model = trained_toy_model(data, epochs=1).eval()
    ctx = UnlearnContext(model, data, torch.arange(8), torch.arange(8, 64), Runtime.from_config(), REMConfig())
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(4, 1, 12, 12)
    with torch.no_grad():
        drop_before = model(x)
        torch.manual_seed(5)
        count = fresh_capacity(ctx, model)
        torch.testing.assert_close(model(x), drop_before, atol=0, rtol=0)
    masks = model.redirection_parameters()
    assert count == sum(int(m.sum()) for m in masks.values()) > 0
    for name, p in model.named_parameters():
        assert torch.equal(p[~masks[name]], before[name][~masks[name]])
    assert any(not torch.equal(p[masks[n]], before[n][masks[n]]) for n, p in model.named_parameters())


def test_ce_fit_is_the_masked_cross_entropy_without_a_reference_pass():
    """fit="ce": step 3.1 is the plain cross-entropy of the masked pass (train mode, as in the repair); the
    reference is never run, so its BatchNorm statistics for theta_o2 cannot change the fit."""
    model, ref, x, y, ids, routed, rt = _pair(train=True)

    class NeverCalled(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the reference ran")

    loss = REM(REMConfig(fit="ce")).repair_loss(model, NeverCalled(), x, y, ids, routed, rt)
    twin = copy.deepcopy(model)
    with partition(twin, "shared", ids=ids, shared_ids=routed):
        expected = per_sample_ce(twin(x), y).mean()
    torch.testing.assert_close(loss.detach(), expected.detach())
    dpo = REM(REMConfig()).repair_loss(copy.deepcopy(model), ref, x, y, ids, routed, rt)
    assert not torch.allclose(loss.detach(), dpo.detach())
    with pytest.raises(ConfigError, match="fit"):
        REMConfig(fit="kl").validate()


def test_capped_fit_weight_is_the_dpo_weight_at_most_one():
    """d(loss)/d(CE) is 2 sigma(beta (CE_ref - CE)) where the model fits worse than the reference, 1 where it
    fits better; the loss is continuous at CE = CE_ref."""
    ce_ref = torch.tensor([0.5, 0.5, 0.5, 0.5, 3.0])
    for beta in (1.0, 2.0):
        ce = torch.tensor([4.0, 1.0, 0.5, 0.1, 0.2], requires_grad=True)
        capped_dpo_fit(ce, ce_ref, beta).sum().backward()
        dpo_weight = 2 * torch.sigmoid(beta * (ce_ref - ce.detach()))
        torch.testing.assert_close(ce.grad, torch.minimum(dpo_weight, torch.ones(5)))
        assert ce.grad[0] < 0.1 and ce.grad[-1] == 1.0  # a forgotten sample keeps its fading weight
    at = torch.tensor([0.5])
    for eps in (1e-4, -1e-4):
        torch.testing.assert_close(capped_dpo_fit(at + eps, at, 1.0), dpo_fit(at, at, 1.0), atol=2e-4, rtol=0)


def test_redirect_known_trains_the_capacity_alone():
    """redirect_known fits D_f through the shared mask with a gradient for theta_o2's own entries only."""
    from rem_unlearn.models import redirection_masks

    model, ref, x, y, ids, routed, rt = _pair(train=True)
    masks = redirection_masks(model)
    loss = REM(REMLabConfig(mechanics=REMMechanics(redirect_known=True))).redirect_known_loss(model, (x, y, ids), routed, masks, rt)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or not g[~masks[n]].any() for n, g in grads.items())  # theta_o1 untouched
    assert sum(int((g[masks[n]] != 0).sum()) for n, g in grads.items() if g is not None) > 0


def test_removal_sees_forget_rows_as_stored_unless_asked(monkeypatch):
    """NPO's weight fades as a row is forgotten but restarts at 1 on each new augmented view of it, so REM's
    flush and removal mini-batch use D_f as stored; ``removal_augment=True`` (rem-official) augments them."""
    data, model = memorised_noise()
    forget = data.ids[:16]
    stored = Batcher(data, Runtime.from_config()).batch(forget_rows(data, forget))[0].flatten(1)
    seen: list[torch.Tensor] = []
    removal_step_loss = REM.removal_step_loss

    def spy(self, model, reference, x, y, rt):
        seen.append(x.detach().flatten(1).clone())
        return removal_step_loss(self, model, reference, x, y, rt)

    monkeypatch.setattr(REM, "removal_step_loss", spy)
    kw = dict(epochs=1, optim={"batch_size": 32, "lr": 0.05}, runtime=RT, max_utility_drop=None)  # memorised noise
    unlearn(model, data, forget, "rem", **kw)
    assert len(seen) > 1  # the flush and the repair's every-step removal
    assert all(torch.cdist(x.float(), stored.float()).min(dim=1).values.max() == 0 for x in seen)
    seen.clear()
    unlearn(model, data, forget, "rem-lab", mechanics={"removal_augment": True}, **kw)
    assert len(seen) > 1
    assert any(torch.cdist(x.float(), stored.float()).min(dim=1).values.max() > 0 for x in seen)
    assert REMOfficialConfig().mechanics.removal_augment and not REMLabConfig().mechanics.removal_augment


class ForgotStoredRows(torch.nn.Module):
    """Predicts ``label`` everywhere except on the exact images in ``stored``: a model that forgot D_f's stored
    rows but kept what they taught, as when REM's repair brings a backdoor back."""

    def __init__(self, stored: torch.Tensor, label: int, num_classes: int):
        super().__init__()
        self.register_buffer("stored", stored.flatten(1).float())
        self.label, self.num_classes = label, num_classes

    def forward(self, x):
        match = (torch.cdist(x.flatten(1).float(), self.stored) < 1e-3).any(1)
        target = torch.where(match, (self.label + 1) % self.num_classes, self.label)
        return torch.nn.functional.one_hot(target, self.num_classes).float()


@pytest.mark.parametrize("views", [0, 4])
def test_proxy_forget_views_see_what_the_stored_rows_hide(toy, views):
    rt = Runtime.from_config()
    forget = torch.nonzero(toy.labels == 0).flatten()[:16]
    stored = Batcher(toy, rt).batch(forget, augment=False)[0]
    model = ForgotStoredRows(stored, label=0, num_classes=toy.num_classes)
    ctx = UnlearnContext(model, toy, forget, toy.rows_except(forget), rt, REMConfig(proxy_forget_views=views))
    selector = ProxySelector(ctx, model)
    assert ctx.forget_accuracy(model) == 0.0  # the stored rows are forgotten
    accuracies = selector.forget_accuracies(model)
    assert accuracies == selector.forget_accuracies(model)  # the same views every time
    removing = max(accuracies.values())
    assert selector.last_removing == removing  # the start proxy read the same model
    logged = ctx.history[-1]
    if views:
        assert removing > 0.8  # most random views are not the stored image: the model still predicts the label
        assert logged["forget_stored"] == 0.0 and logged["forget_views"] == logged["removing"] == removing
    else:
        assert removing == 0.0 and "forget_views" not in logged
    assert REMConfig().proxy_forget_views > 0 and REMOfficialConfig().proxy_forget_views == 0


def test_removal_where_memorised_acts_only_on_rows_the_reference_gets_wrong_as_stored():
    """With removal_where_memorised, a D_f row (or view) whose corrupted label the trained model does not
    predict adds no removal loss; the others add NPO's, and the mean is over every row of the batch."""
    torch.manual_seed(0)
    reference = torch.nn.Linear(4, 3)
    model = copy.deepcopy(reference)
    with torch.no_grad():
        model.weight.add_(0.1 * torch.randn_like(model.weight))
    x = torch.randn(16, 4)
    predicted = reference(x).argmax(1)
    y = torch.where(torch.arange(16) % 2 == 0, predicted, (predicted + 1) % 3)  # half as memorised, half not
    rt = Runtime.from_config(RuntimeConfig(precision="fp32"))
    plain = REM(REMConfig()).removal_step_loss(model, reference, x, y, rt)
    gated = REM(REMLabConfig(mechanics=REMMechanics(removal_where_memorised=True))).removal_step_loss(model, reference, x, y, rt)
    with torch.no_grad():
        per_row = npo_removal(per_sample_ce(model(x), y), per_sample_ce(reference(x), y), 1.0)
    assert torch.allclose(plain, per_row.mean(), atol=1e-5)
    assert torch.allclose(gated, (per_row * (y == predicted)).sum() / 16, atol=1e-5)
    assert gated < plain


def test_rem_offers_users_ten_fields_and_keeps_the_mechanics_for_the_variants():
    """`rem --set` shows what a user tunes; the research switches are set by the named variants or rem-lab."""
    own = {f.name for f in dataclasses.fields(REMConfig)} - {f.name for f in dataclasses.fields(UnlearnConfig)}
    assert len(own) <= 10, sorted(own)
    assert not own & {f.name for f in dataclasses.fields(REMMechanics)}
    with pytest.raises(ConfigError, match="unknown key.*removal_every_step"):
        method_config("rem", {"removal_every_step": False})
    lab = method_config("rem-official", {"mechanics": {"removal_every_step": True}})
    assert lab.mechanics.removal_every_step and not lab.mechanics.drop_mode_batchnorm  # the rest stays official
    assert REMOfficialConfig().mechanics.removal_every_step is False  # the override did not leak into the default
