"""Tests for post-hoc expansion: REM on a plain classifier the user already has."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rem_unlearn.api import unlearn
from rem_unlearn.config import ModelConfig
from rem_unlearn.data.base import ImageDataset
from rem_unlearn.models import ResNet18, SmallCNN, build_model, discard, gates, partition, partition_state
from rem_unlearn.models.expand import (ExpandedLayer, NotAClassifierError, check_classifier, discard_expansion,
                                       expand as expand_model)
from rem_unlearn.models.widen import WideBatchNorm, WideLayer, plan_widening
from rem_unlearn.training import Runtime

CLASSES = 4


def smallcnn() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(CLASSES, in_channels=1, width=0.25).eval()


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return ResNet18(CLASSES, in_channels=1, width=0.125).eval()


def sequential() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12 * 12, 16),
                         nn.ReLU(), nn.Linear(16, CLASSES)).eval()


MODELS = {"smallcnn": smallcnn, "resnet18": resnet18, "sequential": sequential}
HOW = ("branch", "widen")


def expand(model: nn.Module, how: str = "branch", **kw) -> nn.Module:
    """expand() by either mechanism; widening traces the model on an example batch."""
    if how == "widen":
        kw.setdefault("example_input", inputs()[0])
    return expand_model(model, how=how, **kw)


def inputs(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 12, 12, generator=g), torch.arange(100, 100 + n)


def toy_set(n: int = 96) -> ImageDataset:
    g = torch.Generator().manual_seed(2)
    return ImageDataset("toy", torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=g),
                        torch.randint(0, CLASSES, (n,), generator=g), torch.arange(n), CLASSES, (0.5,), (0.25,))


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", list(MODELS))
def test_capacity_off_equals_original(name: str, how: str) -> None:
    model = MODELS[name]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    big = expand(model, how)
    x, _ = inputs()
    with torch.no_grad():
        ref = model(x)
        assert torch.allclose(big(x), ref, atol=1e-6, rtol=0)  # default mode is drop
        with partition(big, "drop"):
            assert torch.allclose(big(x), ref, atol=1e-6, rtol=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert not gates(model) and type(big) is type(model)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(MODELS))
def test_widened_drop_mode_is_the_original_in_training(name: str) -> None:
    """In train mode (BatchNorm on batch statistics, running statistics updated), drop mode runs the
    user's own modules: the same outputs, the same gradients, the same statistics, bit for bit."""
    model = MODELS[name]().train()
    big = expand(model, "widen").train()
    twin = __import__("copy").deepcopy(model)
    x, _ = inputs()
    out_big, out_twin = big(x), twin(x)
    assert torch.equal(out_big, out_twin)
    out_big.square().sum().backward()
    out_twin.square().sum().backward()
    plain = discard(big)
    for (k, v), (k2, v2) in zip(plain.state_dict().items(), twin.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k  # running statistics included
    grads = {n.replace(".layer.", ".").replace(".norm.", "."): p.grad for n, p in big.named_parameters()}
    for k, p in twin.named_parameters():
        assert torch.equal(grads[k], p.grad), k
    extras = [p for n, p in big.named_parameters() if "weight_in" in n or "weight_out" in n or ".extra." in n]
    assert extras and all(p.grad is None for p in extras)  # theta_o2 takes no part in drop mode


def test_default_layers_skip_the_classifier() -> None:
    big = expand(sequential(), "branch")
    assert isinstance(big[0], ExpandedLayer) and isinstance(big[3], ExpandedLayer)
    assert type(big[5]) is nn.Linear
    assert partition_state(big).p_mem == 0.2
    assert all(g.n_fix == 0 for g in gates(big))
    assert big[0].gate.size == 2 and big[3].gate.size == 8  # width 0.5 of 4 and 16 outputs


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", list(MODELS))
def test_own_mode_is_per_example(name: str, how: str) -> None:
    big = expand(MODELS[name](), how, width=1.0)
    x, ids = inputs()
    x = x[:1].expand(len(ids), -1, -1, -1).contiguous()  # one image under different ids
    with torch.no_grad():
        drop = big(x)
        with partition(big, "own", ids=ids):
            own = big(x)
        with partition(big, "own", ids=ids.flip(0)):
            flipped = big(x.flip(0))
    assert not torch.allclose(own, drop, atol=1e-4)
    assert not torch.allclose(own[0], own[1], atol=1e-4)  # the mask depends on the id
    assert torch.allclose(flipped.flip(0), own, atol=1e-5)  # ... and not on the batch position


def test_shared_mode_and_plain_calls() -> None:
    big = expand(smallcnn(), width=1.0)
    x, ids = inputs(4)
    x = x[:1].expand(4, -1, -1, -1).contiguous()
    big.train()  # a plain call in training mode carries ids into the gates...
    with partition(big, "shared", ids=ids, shared_ids=ids[:2]):
        out = big(x)
        out.sum().backward()
    assert torch.allclose(out[0], out[1], atol=1e-5) and not torch.allclose(out[2], out[3], atol=1e-4)
    layer = big.features[0][0]
    assert layer.branch.weight.grad is not None and layer.branch.weight.grad.abs().sum() > 0
    big.zero_grad(set_to_none=True)
    big(x).sum().backward()  # drop mode: theta_o2 gets no gradient
    assert layer.branch.weight.grad is None and layer.layer.weight.grad is not None
    big.eval()
    with torch.no_grad():  # ... and so does no-grad evaluation
        with partition(big, "own", ids=ids):
            own = big(x)
        assert not torch.allclose(own, big(x), atol=1e-4)
    with pytest.raises(RuntimeError, match="ids"):
        with partition(big, "own"):
            big(x)


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("name", list(MODELS))
def test_discard_restores_the_original(name: str, how: str) -> None:
    model = MODELS[name]()
    big = expand(model, how)
    with torch.no_grad():  # pretend unlearning changed both theta_o1 and theta_o2
        for m in big.modules():
            if isinstance(m, (ExpandedLayer, WideLayer, WideBatchNorm)):
                for p in m.parameters():
                    p.add_(0.05 * torch.randn_like(p))
    small = discard(big)
    assert type(small) is type(model)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in model.parameters())
    assert not gates(small)
    x, _ = inputs()
    with torch.no_grad():
        assert torch.allclose(small(x), big(x), atol=1e-6, rtol=0)
        assert not torch.allclose(small(x), model(x), atol=1e-4)
    assert is_plain(discard_expansion(big))
    with pytest.raises(TypeError, match="not expanded"):
        discard_expansion(model)


def is_plain(m: nn.Module) -> bool:
    return not any(isinstance(x, (ExpandedLayer, WideLayer, WideBatchNorm)) for x in m.modules())


def test_rem_through_the_api() -> None:
    model = smallcnn()
    data = toy_set()
    forget = torch.arange(8)
    big = expand(model, "branch", example_input=inputs()[0], num_classes=CLASSES)
    # channels_last off: torch 2.13's CPU conv crashes on channels_last batches of varying small sizes
    runtime = {"progress": False, "device": "cpu", "precision": "fp32", "channels_last": False}
    res = unlearn(big, data, forget, "rem", epochs=1, max_flush_epochs=2, select_best=False,
                  optim={"batch_size": 64}, runtime=runtime)
    assert [h["event"] for h in res.history].count("round") == 1 and is_expanded_model(res.model)
    small = res.discard()
    assert type(small) is SmallCNN and small.state_dict().keys() == model.state_dict().keys()
    assert not torch.equal(small.fc.weight, model.fc.weight)  # REM trained theta_o1 ...
    branch = res.model.features[0][0].branch.weight
    assert not torch.equal(branch, big.features[0][0].branch.weight)  # ... and the redirection capacity
    assert partition_state(big).p_mem == 0.2 and partition_state(big).mode == "drop"


def is_expanded_model(m: nn.Module) -> bool:
    return not is_plain(m)


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(12, 8, batch_first=True)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x.flatten(1, 2))[0][:, -1])


def test_unsupported_layers_are_named() -> None:
    with pytest.raises(TypeError, match=r"'rnn'.*LSTM"):
        expand(WithLSTM(), layers=["rnn"])
    with pytest.raises(ValueError, match=r"no nn.Conv2d or nn.Linear.*'fc'.*rnn \(LSTM\)"):
        expand(WithLSTM())
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        expand(sequential(), layers="nope")
    with pytest.raises(ValueError, match="already has partition gates"):
        expand(expand(sequential()))
    big = expand(WithLSTM(), layers="fc")  # the classifier may be named explicitly (as a branch)
    assert isinstance(big.fc, ExpandedLayer)


def test_non_classifier_fails_clearly() -> None:
    features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    x, _ = inputs(2)
    with pytest.raises(NotAClassifierError, match=r"gave \(2, 4, 8, 8\), expected logits of shape \(2, 4\)"):
        expand(features, example_input=x, num_classes=CLASSES)
    with pytest.raises(NotAClassifierError, match="failed on an input"):
        check_classifier(sequential(), torch.randn(2, 3, 12, 12), CLASSES)
    with pytest.raises(NotAClassifierError, match="expected logits"):
        unlearn(expand(features), toy_set(), torch.arange(4), "rem", epochs=1, runtime={"progress": False})


def test_build_model_plain_archs() -> None:
    for arch, cls in (("resnet18", ResNet18), ("smallcnn", SmallCNN)):
        m = build_model(ModelConfig(arch=arch, width=0.125), 1, CLASSES, 12)
        assert type(m) is cls and not gates(m) and m.arch["width"] == 0.125
        assert m(torch.randn(2, 1, 12, 12)).shape == (2, CLASSES)
        assert type(cls(**m.arch)) is cls


# ----------------------------------------------------------------------------- widening: real units


def test_widen_groups_follow_residual_adds() -> None:
    """ResNet-18: every layer writing one residual stage's stream is one group, widened alike; the
    classifier reads the new units; the model's input and output are never widened."""
    model = resnet18()
    plan = plan_widening(model, inputs()[0])
    stage1 = next(g for g in plan.groups if "conv1" in g.producers)
    assert {"layer1.0.conv2", "layer1.1.conv2"} <= set(stage1.producers) and not stage1.blocked
    assert "layer1.0.bn2" in stage1.norms and "bn1" in stage1.norms
    out = next(g for g in plan.groups if "fc" in g.producers)
    assert out.blocked == "the model's output"
    big = expand(model, "widen", width=0.5)
    assert big.expansion_report["conv1"] == "widened (+4 units)"
    assert big.conv1.extra_out == big.layer1[0].conv2.extra_out == big.layer1[1].conv2.extra_out == 4
    assert big.fc.extra_in == 32 and big.fc.extra_out == 0  # the classifier's input, not its output
    assert isinstance(big.bn1, WideBatchNorm) and big.bn1.extra.num_features == 4


def test_widened_units_are_read_and_trained_in_shared_mode() -> None:
    big = expand(smallcnn(), "widen", width=1.0).train()
    x, ids = inputs(4)
    with partition(big, "shared", ids=ids, shared_ids=ids[:2]):
        out = big(x[:1].expand(4, -1, -1, -1).contiguous())
    out.sum().backward()
    assert torch.allclose(out[0], out[1], atol=1e-5) and not torch.allclose(out[2], out[3], atol=1e-4)
    first, last = big.features[0][0], big.fc
    assert first.weight_out.grad.abs().sum() > 0 and last.weight_in.grad.abs().sum() > 0
    assert first.layer.weight.grad.abs().sum() > 0  # theta_o1 trains too


def test_redirection_masks_of_an_expanded_builtin_plain_model() -> None:
    """An expanded resnet9-plain still has ResNet9.redirection_parameters (it returns nothing for an
    unpartitioned model): the masks must come from what expand added, or redirect_known trains nothing."""
    from rem_unlearn.methods.rem import REM, REMLabConfig, REMMechanics
    from rem_unlearn.models import redirection_masks

    plain = build_model(ModelConfig(arch="resnet9-plain", width=0.125), 1, CLASSES, 12).eval()
    big = expand(plain, "widen", width=1.0, layers=["conv1.0", "conv2.0", "conv3.0", "conv4.0"]).train()
    masks = redirection_masks(big)
    added = {n for n, m in masks.items() if m.all()}
    assert added and all(m.all() or not m.any() for m in masks.values())
    assert all(".layer." not in n and ".norm." not in n for n in added)  # the user's own modules are theta_o1
    assert "conv1.0.weight_out" in added and "fc.weight_in" in added
    partition_state(big).p_mem = 0.5
    x, ids = inputs(4)
    y = torch.arange(4) % CLASSES
    loss = REM(REMLabConfig(mechanics=REMMechanics(redirect_known=True))).redirect_known_loss(big, (x, y, ids), ids, masks, Runtime.from_config())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in big.named_parameters() if n in added)
    assert all(p.grad is None or not p.grad.any() for n, p in big.named_parameters() if n not in added)


class Concat(nn.Module):
    """Channels joined by concatenation: the two producers' groups cannot be widened."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)
        self.mix = nn.Conv2d(8, 4, 3, padding=1)
        self.fc = nn.Linear(4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.mix(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(h.mean((2, 3)))


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        if h.mean() > 0:
            h = torch.relu(h)
        return self.fc(h.mean((2, 3)))


def test_widen_says_what_it_leaves_alone() -> None:
    big = expand(Concat(), "auto", example_input=inputs()[0])
    report = big.expansion_report
    assert report["mix"].startswith("widened") and report["fc"].startswith("widened (reads")
    assert "cat is not a channel-wise operation" in report["a"] and "cat" in report["b"]
    x, ids = inputs()
    with torch.no_grad(), partition(big, "own", ids=ids):
        assert big(x).shape == (len(ids), CLASSES)


def test_untraceable_model_falls_back_to_branches() -> None:
    torch.manual_seed(0)
    big = expand(DataDependent(), "auto", example_input=inputs()[0])
    assert isinstance(big.conv, ExpandedLayer)
    assert "cannot trace" in big.expansion_report["(widening)"]
    assert big.expansion_report["conv"].startswith("branch")
    with pytest.raises(ValueError, match="cannot widen DataDependent: torch.fx cannot trace"):
        expand(DataDependent(), "widen")
    with pytest.raises(ValueError, match="needs example_input"):
        expand_model(sequential(), how="widen")


def test_widen_chosen_layers_only() -> None:
    big = expand(resnet18(), "widen", layers=["layer4.0.conv1"])
    widened = {n for n, r in big.expansion_report.items() if r.startswith("widened")}
    assert widened == {"layer4.0.conv1", "layer4.0.bn1", "layer4.0.conv2"}  # the group and its one reader
    with pytest.raises(ValueError, match="fc: the model's output"):
        expand(resnet18(), "widen", layers=["fc"])


# ----------------------------------------------------------------------------- layers that are not plain


class ScaledLinear(nn.Linear):
    """A subclass with a forward of its own: no branch of the same geometry is known to fit it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * super().forward(x)


class NamedConv(nn.Conv2d):
    """A subclass that keeps nn.Conv2d's forward: expanded like an nn.Conv2d."""


class Mixed(nn.Module):
    """A subclass of each kind, a LayerNorm, a bare parameter, and a Linear whose weight is read directly
    (as fused attention code does), so that wrapping it would never run its branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = NamedConv(1, 4, 3, padding=1)
        self.scaled = ScaledLinear(4, 8)
        self.fused = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)
        self.scale = nn.Parameter(torch.ones(8))
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.scaled(torch.relu(self.conv(x)).mean((2, 3)))
        h = nn.functional.linear(h, self.fused.weight, self.fused.bias)  # bypasses self.fused.forward
        return self.head(self.norm(h) * self.scale)


def test_expand_reports_every_layer_it_does_not_give_capacity() -> None:
    from rem_unlearn.models.expand import expansion_summary

    torch.manual_seed(0)
    model = Mixed().eval()
    x, ids = inputs(4)
    big = expand_model(model, example_input=x, num_classes=CLASSES, how="branch")
    report = big.expansion_report
    assert report["conv"].startswith("branch") and isinstance(big.conv, ExpandedLayer)
    assert report["scaled"].startswith("skipped (ScaledLinear: a subclass of nn.Linear with a forward of its own")
    assert report["fused"].startswith("skipped (Linear: the model reads its weights directly")
    assert type(big.fused) is nn.Linear  # put back: its branch would never have run
    assert report["norm"].startswith("skipped (LayerNorm: a normalisation layer")
    assert report["head"] == "left as is (the classifier)"
    assert report["(model)"] == "skipped (Mixed: its parameters scale are used directly, not through an " \
                                "nn.Conv2d/nn.Linear)"
    assert expansion_summary(report) == ("1 branch, 1 left as is, 4 skipped; skipped: (model) (Mixed), scaled "
                                         "(ScaledLinear), fused (Linear), norm (LayerNorm)")
    with torch.no_grad():
        assert torch.equal(big(x), model(x))  # drop mode: the original model
        with partition(big, "shared", ids=ids, shared_ids=ids[:2]):
            assert not torch.allclose(big(x), model(x))
    plain = discard_expansion(big)
    assert list(plain.state_dict()) == list(model.state_dict())
    with pytest.raises(TypeError, match="'scaled'.*ScaledLinear.*subclasses that keep their forward"):
        expand_model(model, layers=["scaled"])
