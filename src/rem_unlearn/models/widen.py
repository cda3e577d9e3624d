"""Post-hoc redirection capacity as real neurons: widen the channel groups of a traced model.

A *channel group* is a set of tensors whose channels must stay aligned: a layer's
output, the BatchNorm and activations applied to it, and every tensor joined to it
by an element-wise op such as a residual add.  :func:`plan_widening` finds them
with ``torch.fx``; :func:`widen` gives each chosen group ``round(width * C)`` extra
units, the way the partitioned ResNet-9 reserves its theta_o2 channels:

* every Conv2d/Linear writing the group gets extra output rows (new units with
  their own filters and bias), every BatchNorm in it extra entries (their own
  normalisation), and the activations and adds act on them as on any channel;
* every Conv2d/Linear reading the group (the classifier included) gets extra
  input columns, so the next layer really uses the new units.

The extra units are theta_o2 and are switched by the model's partition state:

* ``drop`` mode: each wrapper runs the user's own module on the original-width
  tensor, so the widened model computes exactly the original;
* ``own``/``shared``/``full`` mode: widened tensors carry the extra units, and a
  layer reading a group multiplies them by the example's mask
  (:class:`PartitionGate`, one mask group per channel group) before using them.

Only what the tracer can see and this module understands is widened: a group
that touches anything else (an unknown function, a reshape of channels, a
concatenation, a LayerNorm, the model's input or output) is left alone, and the
plan says why.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F

from .gates import PartitionGate, PartitionState, Switched

WIDEN_LAYERS = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# Modules and functions that act on each channel separately (any number of channels).
CHANNELWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.CELU, nn.ELU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh,
                       nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
                       nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
CHANNELWISE_FUNCTIONS = {F.relu, F.relu6, F.celu, F.elu, F.gelu, F.silu, F.leaky_relu, F.hardswish, F.mish,
                         torch.relu, torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.dropout,
                         F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}
JOINING = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub, torch.add, torch.mul}
JOINING_METHODS = {"add", "add_", "mul", "mul_", "sub"}
FLATTENING = {torch.flatten}


def capacity_on(state: PartitionState) -> bool:
    """Whether theta_o2 takes part in the forward pass under ``state``."""
    return state.mode == "full" or (state.mode in ("own", "shared") and state.p_mem > 0.0)


class WideLayer(Switched):
    """A Conv2d/Linear with ``extra_in`` masked input columns and ``extra_out`` new output units.

    ``layer`` is the user's module, unchanged (theta_o1); the rest is theta_o2.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, extra_in: int, extra_out: int, in_group: int):
        super().__init__()
        self.layer, self.extra_in, self.extra_out = layer, extra_in, extra_out
        conv = isinstance(layer, nn.Conv2d)
        self.dim = 1 if conv else -1
        w = layer.weight
        out_units, in_units = w.shape[0], w.shape[1]
        kernel = tuple(w.shape[2:])
        fan_in = (in_units + extra_in) * math.prod(kernel)
        bound = 1.0 / math.sqrt(fan_in)  # PyTorch's default init for a layer of the widened fan-in

        def fresh(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, device=w.device, dtype=w.dtype).uniform_(-bound, bound))

        self.weight_in = fresh(out_units, extra_in, *kernel) if extra_in else None
        self.weight_out = fresh(extra_out, in_units + extra_in, *kernel) if extra_out else None
        self.bias_out = fresh(extra_out) if extra_out and layer.bias is not None else None
        self.gate = PartitionGate(extra_in, in_group, p_fixed=0.0, dim=self.dim) if extra_in else None

    def extra_repr(self) -> str:
        return f"extra_in={self.extra_in}, extra_out={self.extra_out}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not capacity_on(self.state):
            return self.layer(x)
        w = self.layer.weight
        if self.extra_in:
            n = x.shape[self.dim] - self.extra_in
            x = torch.cat([x.narrow(self.dim, 0, n), self.gate(x.narrow(self.dim, n, self.extra_in))], self.dim)
            w = torch.cat([w, self.weight_in], 1)
        bias = self.layer.bias
        if self.extra_out:
            w = torch.cat([w, self.weight_out], 0)
            if bias is not None:
                bias = torch.cat([bias, self.bias_out])
        if isinstance(self.layer, nn.Conv2d):
            c = self.layer
            if c.padding_mode != "zeros":
                raise NotImplementedError("widening supports zero-padded convolutions only")
            return F.conv2d(x, w, bias, c.stride, c.padding, c.dilation, c.groups)
        return F.linear(x, w, bias)


class WideBatchNorm(Switched):
    """A BatchNorm with ``extra`` entries of its own for the new units (a BatchNorm of the same kind)."""

    def __init__(self, norm: nn.BatchNorm1d | nn.BatchNorm2d, extra: int):
        super().__init__()
        self.norm = norm
        p = next(norm.parameters(), norm.running_mean)
        self.extra = type(norm)(extra, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                                track_running_stats=norm.track_running_stats).to(p.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not capacity_on(self.state):
            return self.norm(x)
        n = self.norm.num_features
        return torch.cat([self.norm(x[:, :n]), self.extra(x[:, n:])], 1)


# ----------------------------------------------------------------------------- planning


@dataclass
class ChannelGroup:
    units: int
    producers: list[str] = field(default_factory=list)  # layers writing the group
    consumers: list[str] = field(default_factory=list)  # layers reading it
    norms: list[str] = field(default_factory=list)
    blocked: str = ""  # why the group cannot be widened ("" = it can)


@dataclass
class WideningPlan:
    """The channel groups of a traced model and which of them can be widened."""

    groups: list[ChannelGroup]
    error: str = ""  # why the model could not be traced at all

    def widenable(self) -> list[int]:
        return [i for i, g in enumerate(self.groups) if not g.blocked and g.producers]


class _Groups:
    """Union-find over channel groups; a blocked member blocks the whole group."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.blocked: list[str] = []
        self.units: list[int | None] = []

    def new(self, units: int | None, blocked: str = "") -> int:
        self.parent.append(len(self.parent))
        self.blocked.append(blocked)
        self.units.append(units)
        return len(self.parent) - 1

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            if self.units[a] != self.units[b] and None not in (self.units[a], self.units[b]):
                self.block(a, "joins tensors of different widths")
            self.blocked[a] = self.blocked[a] or self.blocked[b]
            self.units[a] = self.units[a] if self.units[a] is not None else self.units[b]
        return a

    def block(self, i: int, why: str) -> None:
        root = self.find(i)
        self.blocked[root] = self.blocked[root] or why


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _channels(node: fx.Node) -> int | None:
    shape = _shape(node)
    return shape[1] if shape is not None and len(shape) >= 2 else None


def _flattens_channels(node: fx.Node, src: fx.Node) -> bool:
    """A flatten/view that turns (B, C, 1, 1) or (B, C) into (B, C): channels stay channels."""
    before, after = _shape(src), _shape(node)
    return (before is not None and after is not None and len(after) == 2 and after == before[:2]
            and all(s == 1 for s in before[2:]))


def plan_widening(model: nn.Module, example_input: torch.Tensor) -> WideningPlan:
    """Trace ``model`` on ``example_input`` and find its channel groups (nothing is modified)."""
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = fx.symbolic_trace(model)
        was_training = model.training
        traced.eval()
        with torch.no_grad():
            ShapeProp(traced).propagate(example_input)
        model.train(was_training)
    except Exception as exc:  # torch.fx raises many types for untraceable code; all mean "cannot trace"
        return WideningPlan([], error=f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''})")
    modules = dict(traced.named_modules())
    uf = _Groups()
    group_of: dict[fx.Node, int] = {}
    role: dict[str, list[tuple[str, int]]] = {}  # module name -> [(role, group)]

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a in group_of]

    def block_all(node: fx.Node, why: str) -> int:
        for a in tensor_args(node):
            uf.block(group_of[a], why)
        return uf.new(_channels(node), why)

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            group_of[node] = uf.new(_channels(node), "the model's input")
        elif node.op == "get_attr":
            group_of[node] = uf.new(_channels(node), "a parameter or buffer used as a tensor")
        elif node.op == "output":
            for a in tensor_args(node):
                uf.block(group_of[a], "the model's output")
        elif node.op == "call_module":
            m = modules[str(node.target)]
            args = tensor_args(node)
            name = str(node.target)
            if type(m) in WIDEN_LAYERS and len(args) == 1 and (not isinstance(m, nn.Conv2d) or m.groups == 1):
                role.setdefault(name, []).append(("consumer", group_of[args[0]]))
                group_of[node] = uf.new(_channels(node))
                role[name].append(("producer", group_of[node]))
            elif type(m) in NORMS and len(args) == 1:
                group_of[node] = group_of[args[0]]
                role.setdefault(name, []).append(("norm", group_of[node]))
            elif isinstance(m, CHANNELWISE_MODULES) and len(args) == 1:
                group_of[node] = group_of[args[0]]
            elif isinstance(m, nn.Flatten) and len(args) == 1 and _flattens_channels(node, args[0]):
                group_of[node] = group_of[args[0]]
            else:
                group_of[node] = block_all(node, f"{name} ({type(m).__name__}) is not channel-wise")
        elif node.op in ("call_function", "call_method"):
            args = tensor_args(node)
            target = node.target
            fn = target if node.op == "call_function" else None
            meth = target if node.op == "call_method" else None
            if meth == "size" or (fn is getattr):
                continue  # shapes, not tensors
            if (fn in CHANNELWISE_FUNCTIONS or meth in CHANNELWISE_METHODS) and len(args) == 1:
                group_of[node] = group_of[args[0]]
            elif (fn in JOINING or meth in JOINING_METHODS) and args:
                shapes = {_shape(a) for a in args}
                if len(args) == 2 and len(shapes) == 1:
                    group_of[node] = uf.union(group_of[args[0]], group_of[args[1]])
                elif len(args) == 1 and all(not isinstance(a, fx.Node) or a is args[0] for a in node.args):
                    group_of[node] = group_of[args[0]]  # with a Python number
                else:
                    group_of[node] = block_all(node, f"{getattr(target, '__name__', target)} with broadcasting")
            elif (fn in FLATTENING or meth in ("flatten", "view", "reshape")) and len(args) == 1 \
                    and _flattens_channels(node, args[0]):
                group_of[node] = group_of[args[0]]
            elif meth == "mean" and len(args) == 1 and _shape(node) == (_shape(args[0]) or (0, 0))[:2]:
                group_of[node] = group_of[args[0]]  # global average pool written as x.mean((2, 3))
            else:
                what = getattr(target, "__name__", str(target))
                group_of[node] = block_all(node, f"{what} is not a channel-wise operation")
    # A module called more than once must play each role in one group only.
    for name, uses in role.items():
        for r in {r for r, _ in uses}:
            roots_of_role = {uf.find(g) for rr, g in uses if rr == r}
            if len(roots_of_role) > 1:
                for g in roots_of_role:
                    uf.block(g, f"{name} is used on tensors of different groups")
    roots: dict[int, ChannelGroup] = {}
    for name, uses in role.items():
        for r, g in uses:
            root = uf.find(g)
            group = roots.setdefault(root, ChannelGroup(units=uf.units[root] or 0))
            if r == "producer" and name not in group.producers:
                group.producers.append(name)
            elif r == "consumer" and name not in group.consumers:
                group.consumers.append(name)
            elif r == "norm" and name not in group.norms:
                group.norms.append(name)
    for root, group in roots.items():
        group.blocked = uf.blocked[root]
    return WideningPlan(list(roots.values()))


def widen(model: nn.Module, plan: WideningPlan, chosen: list[int], width: float) -> dict[str, str]:
    """Widen the ``chosen`` groups of ``plan`` in ``model`` (in place); returns what happened to each layer."""
    extra = {i: max(1, round(width * plan.groups[i].units)) for i in chosen}
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    report: dict[str, str] = {}
    for i in chosen:
        g = plan.groups[i]
        for name in g.producers:
            writes[name] = i
        for name in g.consumers:
            reads[name] = i
    for name in sorted(set(reads) | set(writes)):
        layer = model.get_submodule(name)
        e_in = extra[reads[name]] if name in reads else 0
        e_out = extra[writes[name]] if name in writes else 0
        _replace(model, name, WideLayer(layer, e_in, e_out, in_group=reads.get(name, 0)))
        parts = [f"+{e_out} units" if e_out else "", f"reads +{e_in}" if e_in else ""]
        report[name] = "widened (" + ", ".join(p for p in parts if p) + ")"
    for i in chosen:
        for name in plan.groups[i].norms:
            _replace(model, name, WideBatchNorm(model.get_submodule(name), extra[i]))
            report[name] = f"widened (+{extra[i]} entries)"
    return report


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def unwiden(model: nn.Module) -> nn.Module:
    """Put the user's modules back in place of every wrapper (in place)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, WideLayer):
            _replace(model, name, m.layer)
        elif isinstance(m, WideBatchNorm):
            _replace(model, name, m.norm)
    return model


