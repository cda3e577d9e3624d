"""REM for the model a user already has: post-hoc redirection capacity for a plain classifier.

Spec 4.1 step 1 appends randomly initialised capacity theta_o2 to a trained
model.  :func:`expand` does that without touching the user's class or forward:
every chosen ``nn.Conv2d``/``nn.Linear`` is wrapped as

    layer(x) + proj(gate(branch(x)))

where ``branch`` is a fresh layer of the same kind and geometry with
``round(width * out)`` hidden units, ``gate`` a :class:`PartitionGate` with
``p_fixed=0`` (every hidden unit is a theta_o2 unit, masked per example) and
``proj`` a bias-free 1x1 conv / linear back to the layer's outputs.

* drop mode (the default) skips the branch, so the expanded model computes
  exactly what the original computes (theta_o1 = the original weights);
* own/shared mode adds each example's masked share of the branch, with the
  ids coming from :func:`partition` like for the built-in partitioned models;
* ``proj`` is randomly initialised (PyTorch's default init), like the official
  code's untrained channels (docs/paper.md §9.1): switching theta_o2 on perturbs the
  outputs from the first step, and every branch weight gets a gradient at once
  (a zero ``proj`` would leave ``branch`` without gradient on the first step);
* :func:`discard_expansion` puts the original layers back: the result is the
  user's class with the original state_dict keys and shapes.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from ..config import P_MEM
from ..errors import UserError
from .gates import PartitionGate, PartitionState, gates, share_state

SUPPORTED = (nn.Conv2d, nn.Linear)


class NotAClassifierError(UserError, ValueError):
    """The model does not map a batch to (batch, num_classes) logits, which every method needs."""


class ExpandError(UserError, ValueError):
    """Layers or settings that :func:`expand` cannot use."""


class LayerTypeError(ExpandError, TypeError):
    """A named layer that is not a plain ``nn.Conv2d``/``nn.Linear``."""


class ExpandedLayer(nn.Module):
    """``layer(x) + proj(gate(branch(x)))``; ``layer`` is the user's layer, unchanged (theta_o1)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, hidden: int, group: int):
        super().__init__()
        self.layer = layer
        if isinstance(layer, nn.Conv2d):
            self.branch: nn.Module = nn.Conv2d(layer.in_channels, hidden, layer.kernel_size, stride=layer.stride,
                                               padding=layer.padding, dilation=layer.dilation,
                                               padding_mode=layer.padding_mode)
            self.proj: nn.Module = nn.Conv2d(hidden, layer.out_channels, 1, bias=False)
            dim = 1
        else:
            self.branch = nn.Linear(layer.in_features, hidden)
            self.proj = nn.Linear(hidden, layer.out_features, bias=False)
            dim = -1  # features are last, also for (B, T, features) inputs
        self.gate = PartitionGate(hidden, group, p_fixed=0.0, dim=dim)
        w = layer.weight
        for m in (self.branch, self.proj, self.gate):
            m.to(device=w.device, dtype=w.dtype)
        self.train(layer.training)

    def __getattr__(self, name: str):
        """The wrapped layer's attributes (``weight``, ``bias``, ``in_features``, ...): code that reads them
        directly instead of calling the layer still runs, and :func:`expand` finds such a layer, because its
        wrapper is never called, and unwraps it."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("layer"), name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        st = self.gate.state
        if st.mode == "drop" or (st.mode != "full" and st.p_mem <= 0.0):
            return out  # theta_o2 off: exactly the original layer, and no wasted compute
        return out + self.proj(self.gate(self.branch(x)))


def is_expanded(model: nn.Module) -> bool:
    from .widen import WideBatchNorm, WideLayer

    return any(isinstance(m, (ExpandedLayer, WideLayer, WideBatchNorm)) for m in model.modules())


def _describe(model: nn.Module) -> str:
    names = [f"{n} ({type(m).__name__})" for n, m in model.named_modules() if n and not list(m.children())]
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")


def is_plain_layer(m: nn.Module) -> bool:
    """An nn.Conv2d/nn.Linear, or a subclass that computes its output with their own forward.

    A subclass with a forward of its own (weight standardisation, "same"
    padding computed per input, ...) may not give the output a branch of the
    same geometry gives, so it gets no branch and the report says so.
    """
    if isinstance(m, nn.Conv2d):
        return type(m).forward is nn.Conv2d.forward and type(m)._conv_forward is nn.Conv2d._conv_forward
    return isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward


def _choose(model: nn.Module, layers: str | Iterable[str] | None) -> list[str]:
    """Names of the layers to expand: nn.Conv2d/nn.Linear and subclasses that use their forward."""
    found = {n: m for n, m in model.named_modules() if n}
    if layers is None:
        names = [n for n, m in found.items() if is_plain_layer(m)]
        linears = [n for n in names if isinstance(found[n], nn.Linear)]
        if linears:
            names.remove(linears[-1])  # the classifier: the last registered Linear
        if not names:
            raise ExpandError(f"{type(model).__name__} has no nn.Conv2d or nn.Linear layer to expand"
                             f"{f' besides the classifier {linears[-1]!r}' if linears else ''}; its layers: "
                             f"{_describe(model)}. Name layers explicitly with layers=[...]")
        return names
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ExpandError("layers=[] selects nothing to expand")
    for n in names:
        if n not in found:
            raise ExpandError(f"{type(model).__name__} has no layer named {n!r}; its layers: {_describe(model)}")
        if not is_plain_layer(found[n]):
            raise LayerTypeError(f"cannot expand layer {n!r} of type {type(found[n]).__name__}: only nn.Conv2d and "
                                 "nn.Linear layers (or subclasses that keep their forward) can carry redirection "
                                 "capacity")
    return list(dict.fromkeys(names))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


@torch.no_grad()
def classifier_outputs(model: nn.Module, example_input: torch.Tensor, expected: int | None = None) -> int:
    """The number of classes ``model`` scores: it must map a batch to (batch, K) logits (REM's losses are
    per-sample cross-entropies).  Runs once in eval mode (no BN statistics change)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example_input)
    except Exception as e:  # the user's forward: whatever it raises, the model cannot take these inputs
        raise NotAClassifierError(f"{type(model).__name__} failed on an input of shape "
                                  f"{tuple(example_input.shape)}: {type(e).__name__}: {e}") from e
    finally:
        model.train(was_training)
    batch = example_input.shape[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch or out.shape[1] < 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise NotAClassifierError(f"{type(model).__name__} is not a classifier: an input of shape "
                                  f"{tuple(example_input.shape)} gave {got}, expected logits of shape "
                                  f"({batch}, {expected or 'number of classes'})")
    return int(out.shape[1])


def check_classifier(model: nn.Module, example_input: torch.Tensor, num_classes: int) -> None:
    """Fail early unless ``model(example_input)`` gives (batch, num_classes) logits."""
    k = classifier_outputs(model, example_input, num_classes)
    if k != num_classes:
        raise NotAClassifierError(f"{type(model).__name__} is not a {num_classes}-class classifier: an input of "
                                  f"shape {tuple(example_input.shape)} gave {k} outputs per sample")


HOW = ("auto", "widen", "branch")
ROOT = "(model)"  # the report's name for parameters that the model itself holds


def expand(model: nn.Module, layers: str | Iterable[str] | None = None, width: float = 0.5, p_mem: float = P_MEM,
           seed: int = 0, *, example_input: torch.Tensor | None = None, num_classes: int | None = None,
           how: str = "auto") -> nn.Module:
    """A deep copy of ``model`` with redirection capacity; ``model`` itself is never modified.

    ``how``: "widen" adds real units to the model's channel groups (:mod:`.widen`:
    extra channels with their own BatchNorm entries, read by the next layer and the
    classifier; needs ``example_input`` to trace the model); "branch" wraps layers
    as ``layer(x) + proj(gate(branch(x)))``; "auto" widens where the model traces
    and falls back to branches where it does not.  ``expanded.expansion_report``
    says what happened to every layer.

    ``layers``: module names to expand (widen: the layers whose output group is
    widened); default every widenable group, or for branches every
    ``nn.Conv2d``/``nn.Linear`` except the last ``nn.Linear`` (the classifier).
    ``width``: added units as a fraction of a group's (layer's) units.  ``p_mem``:
    per-example keep probability of an added unit in own/shared mode.  ``seed``:
    mask seed, also seeds the new weights (without touching the global RNG).
    With ``example_input`` and ``num_classes`` the model is first checked to be a
    classifier.
    """
    if width <= 0:
        raise ExpandError(f"width must be positive, got {width}")
    if not 0.0 <= p_mem <= 1.0:
        raise ExpandError(f"p_mem must be in [0, 1], got {p_mem}")
    if how not in HOW:
        raise ExpandError(f"how={how!r}; choose one of: {', '.join(HOW)}")
    if gates(model):
        raise ExpandError(f"{type(model).__name__} already has partition gates; REM uses them directly")
    if (num_classes is not None) and example_input is None:
        raise ExpandError("num_classes needs example_input to check the model")
    if example_input is not None and num_classes is not None:
        check_classifier(model, example_input, int(num_classes))
    named = None if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    expanded = copy.deepcopy(model)
    report: dict[str, str] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if how != "branch":
            report = _widen(expanded, named, width, example_input, seed, strict=how == "widen")
        if not report:  # nothing widened: branches on the chosen layers
            for group, name in enumerate(_choose(expanded, named)):
                layer = expanded.get_submodule(name)
                out = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
                _replace(expanded, name, ExpandedLayer(layer, max(1, round(width * out)), group))
                report[name] = f"branch (+{max(1, round(width * out))} hidden units)"
            report.update(getattr(expanded, "_why_not_widened", {}))
    expanded.__dict__.pop("_why_not_widened", None)
    share_state(expanded, PartitionState(p_mem=p_mem, seed=seed))
    if example_input is not None:
        _unwrap_uncalled(expanded, example_input, report)
    _account(expanded, report, chosen=named)
    order = {name or ROOT: i for i, (name, _) in enumerate(expanded.named_modules())}
    expanded.expansion_report = dict(sorted(report.items(), key=lambda item: order.get(item[0], -1)))
    return expanded


def _widen(model: nn.Module, named: list[str] | None, width: float, example_input: torch.Tensor | None,
           seed: int, strict: bool) -> dict[str, str]:
    """Widen the channel groups of ``model`` in place; {} (and a reason) when none can be."""
    from .widen import plan_widening, unwiden, widen

    def give_up(why: str) -> dict[str, str]:
        if strict:
            raise ExpandError(f"cannot widen {type(model).__name__}: {why}")
        model._why_not_widened = {"(widening)": f"not used: {why}"}
        return {}

    if example_input is None:
        return give_up("widening traces the model and needs example_input (a batch of inputs)")
    plan = plan_widening(model, example_input)
    if plan.error:
        return give_up(plan.error)
    chosen = plan.widenable()
    if named is not None:
        _choose(model, named)  # unknown names and unsupported types are errors
        wanted = [i for i, g in enumerate(plan.groups) if set(g.producers) & set(named)]
        missing = [n for n in named if not any(n in plan.groups[i].producers for i in chosen)]
        if missing:
            whys = {n: next((g.blocked for g in plan.groups if n in g.producers), "writes no channel group")
                    for n in missing}
            return give_up("; ".join(f"{n}: {w}" for n, w in whys.items()))
        chosen = [i for i in chosen if i in wanted]
    if not chosen:
        return give_up("no channel group can be widened (" +
                       "; ".join(sorted({g.blocked for g in plan.groups if g.blocked})) + ")")
    report = widen(model, plan, chosen, width)
    check = copy.deepcopy(model)
    share_state(check, PartitionState(mode="full", p_mem=1.0))
    try:
        with torch.no_grad():
            check.eval()(example_input)
    except RuntimeError as exc:  # the user's forward rejects the wider tensors (e.g. a hard-coded reshape)
        unwiden(model)
        return give_up(f"its forward fails on widened tensors ({str(exc).splitlines()[0]})")
    for i, g in enumerate(plan.groups):
        if i not in chosen:
            for name in g.producers:
                report.setdefault(name, f"left as is ({g.blocked or 'not chosen'})")
    return report


@torch.no_grad()
def _unwrap_uncalled(model: nn.Module, example_input: torch.Tensor, report: dict[str, str]) -> None:
    """Run ``model`` once with every branch on; a wrapped layer whose wrapper was not called has its weights
    read directly by the code around it (e.g. fused attention), so its branch would never act: it is put
    back and reported as skipped.  A forward that fails with the branches on is an error."""
    wrapped = {n: m for n, m in model.named_modules() if isinstance(m, ExpandedLayer)}
    if not wrapped:
        return
    called: set[str] = set()
    hooks = [m.register_forward_hook(lambda mod, _i, _o, n=n: called.add(n)) for n, m in wrapped.items()]
    state = next(iter(wrapped.values())).gate.state
    mode, was_training = state.mode, model.training
    state.mode = "full"
    try:
        model.eval()(example_input)
    except Exception as exc:  # the user's forward with every branch on: whatever it raises, expand caused it
        raise ExpandError(f"{type(model).__name__} fails with the added branches on "
                          f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); name the layers "
                          "to expand with layers=[...]") from exc
    finally:
        state.mode = mode
        model.train(was_training)
        for h in hooks:
            h.remove()
    for name in wrapped.keys() - called:
        layer = model.get_submodule(name).layer
        _replace(model, name, layer)
        report[name] = (f"skipped ({type(layer).__name__}: the model reads its weights directly instead of calling "
                        "it, so a branch would never run)")


def _account(model: nn.Module, report: dict[str, str], chosen: list[str] | None) -> None:
    """Add every module that holds parameters but got no capacity to ``report``, with the reason."""
    from .widen import WideBatchNorm, WideLayer

    wrappers = (ExpandedLayer, WideLayer, WideBatchNorm)
    inside = [n for n, m in model.named_modules() if isinstance(m, wrappers)]
    linears = [n for n, m in model.named_modules() if is_plain_layer(m) and isinstance(m, nn.Linear)]
    for name, m in model.named_modules():
        own = [p for p, _ in m.named_parameters(recurse=False)]
        name = name or ROOT
        if not own or name in report or any(name.startswith(w + ".") for w in inside):
            continue
        kind = type(m).__name__
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not is_plain_layer(m):
            base = "nn.Conv2d" if isinstance(m, nn.Conv2d) else "nn.Linear"
            report[name] = (f"skipped ({kind}: a subclass of {base} with a forward of its own; a branch of the "
                            "same geometry may not fit its output)")
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            why = "not chosen" if chosen is not None else "the classifier" if linears and name == linears[-1] \
                else "not in a widened channel group"
            report[name] = f"left as is ({why})"
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or "Norm" in kind:
            report[name] = f"skipped ({kind}: a normalisation layer; no capacity is added to it)"
        else:
            report[name] = (f"skipped ({kind}: its parameters {', '.join(own)} are used directly, not through "
                            "an nn.Conv2d/nn.Linear)")


REPORT_KINDS = ("widened", "branch", "left as is", "skipped")


def report_kind(status: str) -> str:
    """``"branch"``, ``"widened"``, ``"left as is"`` or ``"skipped"``: the part of a report entry before its reason."""
    return status.split(" (")[0]


def expansion_summary(report: dict[str, str], names: int = 8) -> str:
    """One line for the user: how many layers got capacity and how, and which were skipped."""
    from collections import Counter

    counts = Counter(report_kind(v) for k, v in report.items() if k != "(widening)")
    kinds = sorted(counts, key=lambda kind: (REPORT_KINDS + (kind,)).index(kind))
    text = ", ".join(f"{counts[kind]} {kind}" for kind in kinds)
    skipped = [f"{k} ({v.split('(', 1)[1].split(':')[0]})" for k, v in report.items()
               if k != "(widening)" and report_kind(v) == "skipped"]
    if skipped:
        more = f", ... ({len(skipped) - names} more)" if len(skipped) > names else ""
        text += f"; skipped: {', '.join(skipped[:names])}{more}"
    if "(widening)" in report:
        text += f"; widening {report['(widening)']}"
    return text


@torch.no_grad()
def discard_expansion(expanded: nn.Module) -> nn.Module:
    """The user's model again: original class, parameter count and state_dict keys, holding the
    (unlearned) weights of the original layers; equal to ``expanded`` in drop mode."""
    from .widen import unwiden

    if not is_expanded(expanded):
        raise TypeError(f"{type(expanded).__name__} was not expanded by rem_unlearn.expand()")
    plain = copy.deepcopy(expanded)
    for name in [n for n, m in plain.named_modules() if isinstance(m, ExpandedLayer)]:
        _replace(plain, name, plain.get_submodule(name).layer)
    unwiden(plain)
    plain.__dict__.pop("expansion_report", None)
    return plain
