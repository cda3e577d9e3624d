"""Every registered unlearning method on a tiny ResNet-9, plus the registry and the shared pieces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import rem_unlearn.methods.registry as registry
from rem_unlearn.api import unlearn
from rem_unlearn.config import OptimConfig, RuntimeConfig, TrainConfig, from_dict
from rem_unlearn.data.base import ImageDataset
from rem_unlearn.methods import EpochMethod, Method, UnlearnConfig, get_method, method_names, register_method
from rem_unlearn.methods.common import dampen, importance_ratio, layers_in_forward_order, percentile
from rem_unlearn.methods.common import ptn_percentile as potion_percentile
from rem_unlearn.models.gates import partition
from rem_unlearn.models.resnet9 import ResNet9
from rem_unlearn.training import Runtime, Trainer

N, CLASSES, SIDE, BATCH = 256, 4, 16, 64  # 16 px: with 12 px conv4's map is 1x1 and BN rejects 1-sample batches
BUDGET = math.ceil(N / BATCH)  # epochs=1
RUNTIME = {"progress": False, "threads": 1}  # one thread: far faster than two on a shared 2-core machine
UNCHANGED = {"none", "etd"}
# Settings under which a method changes the toy model within one epoch's budget: ANP's paper threshold (0.2)
# prunes nothing after 4 mask steps, so the contract prunes every neuron whose mask moved at all.
CONTRACT_OVERRIDES = {"anp": {"threshold": 0.9999}}


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    images = torch.randint(0, 80, (N, 1, SIDE, SIDE), dtype=torch.uint8, generator=g)
    half = SIDE // 2
    for i, c in enumerate(labels.tolist()):  # a learnable pattern: one bright quadrant per class
        r, q = divmod(c, 2)
        images[i, 0, r * half:(r + 1) * half, q * half:(q + 1) * half] += 150
    return ImageDataset("toy", images, labels, torch.arange(N) * 3 + 7, CLASSES, (0.4,), (0.3,), flip=False)


@pytest.fixture(scope="module")
def forget_ids(toy: ImageDataset) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return toy.ids[torch.randperm(N, generator=g)[:20]]


@pytest.fixture()
def model() -> ResNet9:
    torch.manual_seed(0)
    return ResNet9(num_classes=CLASSES, in_channels=1, width=0.125).eval()


def clone_state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def params_changed(before: dict[str, torch.Tensor], after: nn.Module) -> dict[str, torch.Tensor]:
    """Per parameter (not buffer), which entries differ."""
    return {n: p.detach().cpu() != before[n] for n, p in after.named_parameters()}


def count_steps(monkeypatch) -> list[int]:
    counted: list[int] = []
    original = Trainer.step

    def step(self, loss, count=True):
        if count:
            counted.append(1)
        return original(self, loss, count)

    monkeypatch.setattr(Trainer, "step", step)
    return counted


def run(model, toy, forget_ids, name, **extra):
    if name == "rem-ideal":
        extra.setdefault("oracle_ids", torch.cat([forget_ids, toy.ids[:5]]).unique())
    extra.setdefault("max_utility_drop", None)  # the untrained toy model's accuracy is chance: the guard reads noise
    return unlearn(model, toy, forget_ids, name, epochs=1, optim={"batch_size": BATCH}, runtime=RUNTIME, **extra)


# ----------------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", method_names())
def test_method_contract(name, model, toy, forget_ids, monkeypatch):
    before = clone_state(model)
    counted = count_steps(monkeypatch)
    detection_steps: list[int] = []  # the detect-* methods' discovery trains scorers' models outside the budget
    import rem_unlearn.methods.detect as detect

    def detected(ctx, scorer):
        out = original_detected(ctx, scorer)
        detection_steps.append(len(counted))
        return out

    original_detected = detect.detected
    monkeypatch.setattr(detect, "detected", detected)
    res = run(model, toy, forget_ids, name, select_best=False, **CONTRACT_OVERRIDES.get(name, {}))
    out = res.model
    assert (len(detection_steps) == 1) == name.startswith("detect-")
    counted = counted[sum(detection_steps):]

    for k, v in model.state_dict().items():  # the input model is never modified
        assert torch.equal(v, before[k]), f"{name} modified the input model ({k})"
    with torch.no_grad(), partition(out, "drop"):
        y = out(torch.randn(3, 1, SIDE, SIDE))
    assert y.shape == (3, CLASSES) and torch.isfinite(y).all()

    changed = sum(int(c.sum()) for c in params_changed(before, out).values())
    if name in UNCHANGED:
        assert changed == 0
    else:
        assert changed > 0, f"{name} returned unchanged weights"

    cls = get_method(name)
    assert len(counted) <= BUDGET, f"{name} made {len(counted)} counted steps, budget {BUDGET}"
    if cls.gradient_based and name not in UNCHANGED:
        assert len(counted) >= 1
    else:
        assert len(counted) == 0
    assert res.method == name and isinstance(res.config, dict)


def test_bad_teacher_targets_the_random_teacher_on_forget_rows_only(model, toy, forget_ids):
    """The random teacher runs on the D_f rows of a batch only; every row's target is its own teacher's output
    (the student in train mode, as during unlearning)."""
    from rem_unlearn.methods.bad_teacher import BadTeacher
    from rem_unlearn.methods.common import distill_kl, frozen_copy

    torch.manual_seed(1)
    method = BadTeacher()
    method.good = frozen_copy(model)
    method.bad = frozen_copy(ResNet9(num_classes=CLASSES, in_channels=1, width=0.125))
    method.forget_ids = forget_ids
    rows = torch.arange(64)
    x = (toy.images[rows].float() / 255 - 0.4) / 0.3
    ids = toy.ids[rows]
    forget = torch.isin(ids, forget_ids)
    assert 0 < int(forget.sum()) < len(rows)
    seen: list[int] = []
    method.bad.register_forward_hook(lambda _m, inp, _out: seen.append(len(inp[0])))
    student = ResNet9(num_classes=CLASSES, in_channels=1, width=0.125).train()
    torch.manual_seed(2)
    loss = method.loss(student, x, toy.labels[rows], ids)
    assert seen == [int(forget.sum())]
    with torch.no_grad():
        expected = torch.where(forget[:, None], method.bad(x), method.good(x))
    student_out = student(x)  # train-mode BN: the same batch statistics as in the loss
    assert torch.allclose(loss, distill_kl(student_out, expected), atol=1e-5)


def test_every_baseline_is_registered():
    expected = {"none", "etd", "retrain", "finetune", "cf-k", "eu-k", "ga", "npo", "scrub", "bad-teacher", "salun",
                "ssd", "potion", "rem", "detect-retrain", "detect-rem", "cuts", "anp", "ibau"}
    assert expected <= set(method_names())
    for name in method_names():
        cls = get_method(name)
        assert issubclass(cls.Config, UnlearnConfig) and cls.name == name and cls.summary


def test_retrain_with_recipe(model, toy, forget_ids, monkeypatch):
    counted = count_steps(monkeypatch)
    recipe = TrainConfig(optim=OptimConfig(lr=0.01, batch_size=BATCH), epochs=2, augment=False)
    res = unlearn(model, toy, forget_ids, "retrain", pretrain=recipe, runtime=RUNTIME)
    assert len(counted) == 2 * math.ceil((N - len(forget_ids)) / BATCH)  # the recipe's epochs over D_r
    assert [h["epoch"] for h in res.history if h["event"] == "retrain"] == [1, 2]


# ----------------------------------------------------------------------------- dampening (SSD, Potion)


@pytest.mark.parametrize("name, kw", [("ssd", {}), ("ssd", {"alpha": 10.0}), ("potion", {})])
def test_dampening_touches_only_selected_entries(name, kw, model, toy, forget_ids):
    before = clone_state(model)
    res = run(model, toy, forget_ids, name, **kw)
    selected = [h for h in res.history if h["event"] in ("dampened", "potion", "ssd")][-1]["selected"]
    changed = params_changed(before, res.model)
    n_changed = sum(int(c.sum()) for c in changed.values())
    assert 0 < n_changed <= selected
    for n, p in res.model.named_parameters():
        old, new = before[n][changed[n]], p.detach()[changed[n]]
        assert bool((new.abs() < old.abs()).all()) and bool((new * old >= 0).all())  # shrunk towards 0
    for k, v in res.model.state_dict().items():  # no gradient training: BN statistics untouched too
        if "running" in k or "num_batches" in k:
            assert torch.equal(v, before[k])


def test_dampen_unit():
    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    w0 = lin.weight.detach().clone()
    imp_f = {"weight": torch.tensor([[10.0, 1.0, 5.0], [0.0, 3.0, 2.0]])}
    imp_r = {"weight": torch.tensor([[0.5, 1.0, 0.0], [0.0, 0.2, 1.0]])}
    sel = dampen(lin, imp_f, imp_r, alpha=10.0)["weight"]
    # ratios: 20, 1, inf / 0 (0/0), 15, 2 -> selected where ratio > 10
    assert sel.tolist() == [[True, False, True], [False, True, False]]
    expect = w0.clone()
    expect[0, 0] *= 0.5 / 10.0
    expect[0, 2] *= 0.0
    expect[1, 1] *= 0.2 / 3.0
    assert torch.allclose(lin.weight, expect)
    assert torch.equal(lin.weight[~sel], w0[~sel])  # bit-identical elsewhere
    r = importance_ratio(imp_f["weight"], imp_r["weight"])
    assert r[0, 2] == math.inf and r[1, 0] == 0


def test_percentiles():
    v = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    for q in (0, 12.5, 50, 98.9, 100):
        assert percentile(v, q) == pytest.approx(float(np.percentile(v.numpy(), q)))
    assert potion_percentile(0.02) == pytest.approx(100 - math.log(3.0))  # 98.90th
    assert potion_percentile(1e50) == 0.0 and potion_percentile(0.0) == 100.0


# ----------------------------------------------------------------------------- SalUn


@pytest.mark.parametrize("density", [0.1, 0.5])
def test_salun_mask_density(density, model, toy, forget_ids):
    before = clone_state(model)
    res = run(model, toy, forget_ids, "salun", density=density, select_best=False)
    row = next(h for h in res.history if h["event"] == "saliency")
    assert row["density"] == pytest.approx(density, abs=0.01)
    n_changed = sum(int(c.sum()) for c in params_changed(before, res.model).values())
    assert 0 < n_changed <= row["salient"]  # only salient entries moved (weight decay included)


def test_trainer_grad_mask_freezes_other_entries():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    mask = torch.rand(3, 4) < 0.5
    w0, b0 = lin.weight.detach().clone(), lin.bias.detach().clone()
    rt = Runtime.from_config(RuntimeConfig(device="cpu", precision="fp32", progress=False, threads=1))
    trainer = Trainer(lin, OptimConfig(lr=0.1, weight_decay=0.1, schedule="constant"), 5, rt,
                      grad_masks={lin.weight: mask})
    for _ in range(3):
        trainer.step(lin(torch.randn(8, 4)).pow(2).mean())
    assert torch.equal(lin.weight[~mask], w0[~mask])
    assert bool((lin.weight[mask] != w0[mask]).all()) and not torch.equal(lin.bias, b0)
    with pytest.raises(ValueError, match="shape"):
        Trainer(lin, OptimConfig(), 5, rt, grad_masks={lin.weight: torch.ones(2, 2, dtype=torch.bool)})


# ----------------------------------------------------------------------------- CF-k / EU-k


def test_layers_in_forward_order(model, toy, forget_ids):
    from rem_unlearn.methods.base import UnlearnContext

    rt = Runtime.from_config(from_dict(RuntimeConfig, RUNTIME))
    rows = toy.rows_of(forget_ids)
    keep = torch.ones(N, dtype=torch.bool)
    keep[rows] = False
    ctx = UnlearnContext(model, toy, rows, torch.nonzero(keep).flatten(), rt, UnlearnConfig())
    layers = layers_in_forward_order(ctx, model)
    assert [layer[0] for layer in layers] == [
        "conv1.0", "conv2.0", "res1.body.0.0", "res1.body.1.0", "conv3.0", "res2.body.0.0", "res2.body.1.0",
        "conv4.0", "fc"]
    assert layers[0] == ["conv1.0", "conv1.1"] and layers[-1] == ["fc"]


@pytest.mark.parametrize("name", ["cf-k", "eu-k"])
def test_last_k_layers_only(name, model, toy, forget_ids):
    before = clone_state(model)
    res = run(model, toy, forget_ids, name, k=2, select_best=False)
    trained = ("conv4.", "fc.")
    for k, v in res.model.state_dict().items():
        if not k.startswith(trained):
            assert torch.equal(v, before[k]), f"{name} changed frozen {k}"
    assert not torch.equal(res.model.fc.weight.detach(), before["fc.weight"])


# ----------------------------------------------------------------------------- configuration


def test_partial_optim_override_keeps_method_defaults():
    cfg = from_dict(get_method("scrub").Config, {"optim": {"batch_size": 32}})
    assert cfg.optim.batch_size == 32 and cfg.optim.lr == 0.005 and cfg.optim.schedule == "warmup-linear"
    cfg = from_dict(get_method("rem").Config, {"optim": {"lr": 0.01}})
    assert cfg.optim.schedule == "constant" and cfg.optim.batch_size == 128


# ----------------------------------------------------------------------------- registry


class _Plain(Method):
    summary = "test method: scales the fc weights"

    def run(self, ctx):
        with torch.no_grad():
            ctx.model.fc.weight.mul_(0.5)
        return ctx.model


@pytest.fixture()
def isolated_registry(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    return registry


def test_registry_rejects_duplicates(isolated_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_method("ga")(type("Other", (Method,), {}))
    with pytest.raises(TypeError):
        register_method("not-a-method")(object)


def test_registry_unknown_name_lists_registered(model, toy, forget_ids):
    with pytest.raises(ValueError) as err:
        get_method("no-such-method")
    msg = str(err.value)
    assert "no-such-method" in msg and all(n in msg for n in ("rem", "ssd", "potion", "salun"))
    with pytest.raises(ValueError, match="registered methods"):
        unlearn(model, toy, forget_ids, "no-such-method")


def test_decorator_registration_is_used_by_unlearn(isolated_registry, model, toy, forget_ids):
    register_method("halve-fc")(type("HalveFc", (_Plain,), {}))
    assert "halve-fc" in method_names()
    res = unlearn(model, toy, forget_ids, "halve-fc", runtime=RUNTIME)
    assert torch.allclose(res.model.fc.weight, model.fc.weight * 0.5)


def test_entry_point_method_is_used_by_unlearn(isolated_registry, monkeypatch, model, toy, forget_ids):
    plugin = type("Plugin", (_Plain,), {})

    class FakeEntryPoint:
        name = "from-plugin"

        def load(self):
            return plugin

    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group=None: [FakeEntryPoint()] if group == "rem_unlearn.methods" else [])
    assert "from-plugin" in method_names()
    assert get_method("from-plugin") is plugin
    res = unlearn(model, toy, forget_ids, "from-plugin", runtime=RUNTIME)
    assert torch.allclose(res.model.fc.weight, model.fc.weight * 0.5)


@pytest.mark.parametrize("name", ["ga", "scrub", "salun"])
def test_observer_sees_start_and_every_selection_point(name, model, toy, forget_ids):
    seen: list[str] = []
    res = unlearn(model, toy, forget_ids, name, epochs=1, optim={"batch_size": BATCH}, runtime=RUNTIME,
                  on_epoch=lambda m, label: seen.append(label))
    considered = [h["at"] for h in res.history if h["event"] == "proxy"]
    assert seen[0] == "start" and seen == considered  # observed exactly where the proxy looked


class _Bf16Fragile(EpochMethod):
    """Cross-entropy plus a term that is 1e-4 in fp32 and infinite in bf16 autocast (1.0001 rounds to 1)."""

    summary = "test method: a loss whose bf16 rounding divides by zero"

    def loss(self, model, x, y, ids):
        near_one = torch.full((1, 1), 1.0001) @ torch.ones(1, 1)  # a matmul: autocast runs it in bf16
        return torch.nn.functional.cross_entropy(model(x), y) + 1e-8 / (near_one.sum() - 1)


def test_a_bf16_overflow_reruns_the_method_in_fp32(isolated_registry, model, toy, forget_ids):
    register_method("bf16-fragile")(_Bf16Fragile)
    fp32 = unlearn(model, toy, forget_ids, "bf16-fragile", runtime={**RUNTIME, "precision": "fp32"}, epochs=1,
                   max_utility_drop=None)
    assert not any(row.get("event") == "fp32 rerun" for row in fp32.history)
    res = unlearn(model, toy, forget_ids, "bf16-fragile", runtime={**RUNTIME, "precision": "bf16"}, epochs=1,
                  max_utility_drop=None)
    assert res.history[0]["event"] == "fp32 rerun" and "loss became inf" in res.history[0]["reason"]
    assert any(row.get("event") == "selected" for row in res.history)
    assert not any(p.dtype == torch.bfloat16 for p in res.model.parameters())
