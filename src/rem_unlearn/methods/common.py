"""Pieces the methods share: selection start and finish, frozen copies, distillation, importances,
dampening and its test-free search, layer lookup.

The epoch loop of the gradient baselines is their template (:mod:`.template`);
REM uses :func:`start_selection`, :func:`finish` and :func:`frozen_copy` too.
The SSD family shares :func:`importances`, :func:`dampen` and
:func:`neutralisation_search`; CF-k and EU-k share :func:`last_layers`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..config import OptimConfig
from .base import ProxySelector, UnlearnContext, unlearn_optim

def naive_optim() -> OptimConfig:
    """The benchmark's "Naive" training loop (docs/paper.md §5): the unlearning SGD with 1 % warm-up and linear decay."""
    return replace(unlearn_optim(), schedule="warmup-linear")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen, eval-mode deep copy (teacher, reference); a plain call runs it in drop mode."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton distillation loss KL(p_teacher || p_student) at temperature T, times T^2, batch mean."""
    t = float(temperature)
    log_s = F.log_softmax(student.float() / t, dim=1)
    log_t = F.log_softmax(teacher.float() / t, dim=1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * (t * t)


def start_selection(ctx: UnlearnContext, model: nn.Module) -> ProxySelector:
    """The proxy selector with ``model`` as the bar; the observer sees it as "start"."""
    selector = ProxySelector(ctx, model)
    ctx.observe(model, "start")
    return selector


def finish(ctx: UnlearnContext, selector: ProxySelector, model: nn.Module) -> nn.Module:
    """The selected model (best proxy, or the last one with ``select_best=False``), logged."""
    ctx.log(event="selected", at=selector.best_label, proxy=selector.best_proxy)
    return selector.result(model)


# ----------------------------------------------------------------------------- parameter importances


def logit_norm(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Label-free objective of LFSSD/Potion: the batch mean of the per-sample L2 norm of the logits."""
    return torch.linalg.vector_norm(logits.float(), dim=1).mean()


def ce_objective(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y)


def importances(ctx: UnlearnContext, model: nn.Module, rows: torch.Tensor,
                objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                reduce: str = "square") -> dict[str, torch.Tensor]:
    """Per-entry parameter statistics of ``objective``'s mini-batch gradients on ``rows``.

    ``reduce``: "square" = mean of grad^2 (diagonal Fisher, SSD), "abs" = mean
    of |grad| (LFSSD/Potion), "grad" = mean signed gradient (SalUn takes its
    absolute value).  The model runs in eval mode (BN statistics untouched) on
    non-augmented images; its parameters are not changed.
    """
    if reduce not in ("square", "abs", "grad"):
        raise ValueError(f"reduce={reduce!r}; choose square, abs or grad")
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params}
    was_training = model.training
    model.eval()
    batches = 0
    for x, y, _ids in ctx.eval_batcher.epoch(rows, ctx.config.optim.batch_size, shuffle=False):
        model.zero_grad(set_to_none=True)
        with ctx.runtime.autocast():
            loss = objective(model(x), y)
        loss.backward()
        for n, p in params:
            if p.grad is None:
                continue
            g = p.grad.float()
            acc[n] += g * g if reduce == "square" else (g.abs() if reduce == "abs" else g)
        batches += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return {n: a / max(1, batches) for n, a in acc.items()}


def active_entries(model: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean masks of the parameter entries the drop-mode model uses.

    For a partitioned ResNet-9 the entries that only serve theta_o2 are
    excluded (they get no gradient in drop mode); other models use every entry.
    """
    redirect = getattr(model, "redirection_parameters", None)
    only_o2 = redirect() if callable(redirect) else {}
    out = {}
    for n, p in model.named_parameters():
        m = only_o2.get(n)
        out[n] = torch.ones_like(p, dtype=torch.bool) if m is None else ~m.to(p.device)
    return out


def importance_ratio(imp_f: torch.Tensor, imp_r: torch.Tensor) -> torch.Tensor:
    """imp_f / imp_r with x/0 = inf for x > 0 and 0/0 = 0 (an entry neither set uses is never selected)."""
    safe = torch.where(imp_r > 0, imp_r, torch.ones_like(imp_r))
    ratio = imp_f / safe
    return torch.where(imp_r > 0, ratio, torch.where(imp_f > 0, torch.full_like(ratio, math.inf),
                                                     torch.zeros_like(ratio)))


def percentile(values: torch.Tensor, q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default."""
    v = torch.sort(values.detach().flatten().double().cpu()).values
    if v.numel() == 0:
        raise ValueError("percentile of an empty set")
    pos = min(max(q, 0.0), 100.0) / 100.0 * (v.numel() - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or v[hi] == v[lo]:
        return float(v[lo])
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


@torch.no_grad()
def dampen(model: nn.Module, imp_f: dict[str, torch.Tensor], imp_r: dict[str, torch.Tensor], alpha: float,
           lam: float = 1.0, within: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Selective synaptic dampening; returns the selected-entry masks.

    Entries with imp_f > alpha * imp_r (as a ratio, see :func:`importance_ratio`)
    are multiplied by min(1, lam * imp_r / imp_f); every other entry is left
    bit-identical.  ``within`` restricts the selection (e.g. to active entries).
    """
    selected = {}
    for n, p in model.named_parameters():
        if n not in imp_f:
            continue
        f, r = imp_f[n].to(p.device), imp_r[n].to(p.device)
        sel = importance_ratio(f, r) > alpha
        if within is not None and n in within:
            sel &= within[n].to(p.device)
        beta = (lam * r / torch.where(sel, f, torch.ones_like(f))).clamp(max=1.0)
        p.copy_(torch.where(sel, p * beta.to(p.dtype), p))
        selected[n] = sel
    return selected


def ptn_percentile(f: float) -> float:
    """The PTN search's selection percentile for forget fraction f: 100 - ln(1 + 100 f), clipped to [0, 100]."""
    return min(100.0, max(0.0, 100.0 - math.log1p(100.0 * f)))


def neutralisation_search(ctx: UnlearnContext, model: nn.Module, imp_f: dict[str, torch.Tensor],
                          imp_r: dict[str, torch.Tensor], *, lam: float, p_cut: float, step_mult: float,
                          max_tries: int, event: str) -> nn.Module:
    """The test-free search for the dampening threshold (Potion's PTN search, Schoepf et al. 2024).

    With f = |D_f| / |D_tr|, alpha is the (100 - ln(1 + 100 f))-th percentile of imp_f / imp_r over the
    entries the drop-mode model uses; entries above it are dampened (:func:`dampen`).  A try is accepted
    once the D_f accuracy is <= ``p_cut`` x the original's or <= gamma; otherwise the weights are restored,
    f grows by ``step_mult`` (a lower percentile: more entries) and it tries again, at most ``max_tries``
    times.  When no try is accepted the last one is returned.  Only D_f and D_r are used, never test data.
    """
    active = active_entries(model)
    ratios = torch.cat([importance_ratio(imp_f[n], imp_r[n])[active[n]] for n in imp_f])
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    start_acc = ctx.forget_accuracy(model)
    f = len(ctx.forget_rows) / len(ctx.train)
    for attempt in range(1, max_tries + 1):
        if attempt > 1:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(original[n])
        q = ptn_percentile(f)
        alpha = percentile(ratios, q)
        selected = dampen(model, imp_f, imp_r, alpha, lam, within=active)
        acc = ctx.forget_accuracy(model)
        accepted = acc <= p_cut * start_acc or acc <= ctx.config.gamma
        ctx.log(event=event, attempt=attempt, f=f, percentile=q, alpha=alpha, forget_accuracy=acc,
                selected=sum(int(s.sum()) for s in selected.values()), accepted=accepted)
        if accepted:
            break
        f *= step_mult
    return model


# ----------------------------------------------------------------------------- layers (CF-k / EU-k)

WEIGHTED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


@torch.no_grad()
def layers_in_forward_order(ctx: UnlearnContext, model: nn.Module) -> list[list[str]]:
    """Module names grouped into layers, in the order one forward pass calls them.

    A layer is a Conv/Linear module plus the normalisation modules called after
    it (a BatchNorm belongs to its conv); norms called before any Conv/Linear
    join the first layer.  Parameters outside such modules (e.g. a ViT's class
    token) belong to no layer.
    """
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []

    def hook(module: nn.Module, _inputs) -> None:
        if module not in order:
            order.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, WEIGHTED_LAYERS + NORM_LAYERS)]
    was_training = model.training
    model.eval()
    try:
        x, _, _ = ctx.eval_batcher.batch(ctx.all_rows[:2])
        with ctx.runtime.autocast():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    layers: list[list[str]] = []
    pending: list[str] = []
    for m in order:
        if isinstance(m, WEIGHTED_LAYERS):
            layers.append([names[m]] + pending)
            pending = []
        elif layers:
            layers[-1].append(names[m])
        else:
            pending.append(names[m])
    return layers


def last_layers(ctx: UnlearnContext, model: nn.Module, k: int) -> list[str]:
    """Module names of the last ``k`` layers (all layers for k <= 0)."""
    layers = layers_in_forward_order(ctx, model)
    chosen = layers if k <= 0 else layers[-k:]
    return [n for layer in chosen for n in layer]


@torch.no_grad()
def reinitialise(ctx: UnlearnContext, model: nn.Module, module_names: list[str]) -> None:
    """Give the named modules the weights and statistics of a freshly initialised model of the same architecture."""
    fresh = dict(ctx.fresh_model().named_modules())
    modules = dict(model.named_modules())
    for n in module_names:
        modules[n].load_state_dict(fresh[n].state_dict())
