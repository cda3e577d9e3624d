"""Why the widened ResNet-9 trails the capacity model: the reference's BatchNorm statistics for theta_o2.

REM's redirect term (step 3.1) fits every sample relative to a frozen reference run in
masked mode with eval-mode BatchNorm.  The capacity model's theta_o2 was never trained:
Adam's weight decay shrank it during pre-training, so its BatchNorm running variances
are small (0.02-0.05 against 0.2-1.4 for theta_o1), and REM's step 1 gives it fresh
weights without touching those statistics.  The reference therefore amplifies the fresh
units several-fold, its masked-mode loss is high, and the fit keeps a large weight.
``expand``'s new units start with running statistics (0, 1) and get no such boost.

Variants, each REM on one cell (expand + discard for the plain model):

* ``capacity``: the capacity-0.5 ResNet-9 as the benchmark runs it;
* ``capacity-sane``: the same, with theta_o2's running statistics re-estimated on D_r
  after step 1 (theta_o1's kept), so the reference normalises the fresh units correctly;
* ``plain``: ``resnet9-plain`` + ``expand`` (the equivalence check of research/notes/any-model.md);
* ``plain-mimic``: the same, with the capacity model's theta_o2 running statistics
  copied into the widened BatchNorms (the reference then sees what the capacity model's does).

``--set fit=ce`` runs any of them with the reference-free fit.  One JSON line per run.
``--statistics`` prints, instead, the capacity model's BatchNorm running variances (theta_o1
and theta_o2 halves) and the masked-mode loss of the reference (eval mode) and of the model
(train mode) on one D_tr batch, for both models, after step 1.

    .venv/bin/python research/experiments/reference_stats.py --rates 0.1,1.0 --seeds 0,1,2
    .venv/bin/python research/experiments/reference_stats.py --statistics
"""

from __future__ import annotations

import argparse
import copy
import json
from types import SimpleNamespace

import torch
from torch import nn

from any_model import MODELS, task_for  # research/experiments/any_model.py: the same trained models and widening
from rem_unlearn import discard, expand, unlearn
from rem_unlearn.config import apply_overrides
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.methods import rem as rem_module
from rem_unlearn.training import recalibrate_batchnorm

VARIANTS = ("capacity", "capacity-sane", "plain", "plain-mimic")
WIDEN = MODELS["ResNet-9 plain + expand"][1]  # expand where the capacity model keeps theta_o2, by the same width
_fresh_capacity = rem_module.fresh_capacity


def capacity_channels(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per BatchNorm of a capacity model, which channels are theta_o2 (all False in a layer that is not split)."""
    masks = model.redirection_parameters()
    return {name: masks[f"{name}.weight"] for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}


def fresh_capacity_with_statistics(ctx, model) -> int:
    """REM's step 1, then theta_o2's BatchNorm statistics re-estimated on D_r (every other channel's kept)."""
    count = _fresh_capacity(ctx, model)
    norms = dict(model.named_modules())
    kept = {name: (norms[name].running_mean.clone(), norms[name].running_var.clone(), o2)
            for name, o2 in capacity_channels(model).items()}
    recalibrate_batchnorm(model, ctx.eval_batcher, ctx.retain_rows, mode="own", seed=0)
    with torch.no_grad():
        for name, (mean, var, o2) in kept.items():
            norms[name].running_mean[~o2], norms[name].running_var[~o2] = mean[~o2], var[~o2]
    return count


@torch.no_grad()
def copy_capacity_statistics(widened: nn.Module, capacity: nn.Module) -> None:
    """The capacity model's theta_o2 running statistics into the widened BatchNorms of the same name."""
    source = dict(capacity.named_modules())
    o2 = capacity_channels(capacity)
    for name, m in widened.named_modules():
        if isinstance(getattr(m, "extra", None), nn.BatchNorm2d):
            m.extra.running_mean.copy_(source[name].running_mean[o2[name]])
            m.extra.running_var.copy_(source[name].running_var[o2[name]])


@torch.no_grad()
def print_statistics(capacity, plain) -> None:
    from rem_unlearn.methods.base import per_sample_ce
    from rem_unlearn.methods.common import frozen_copy
    from rem_unlearn.models import partition, partition_state

    norms = dict(capacity.model.named_modules())
    for name, o2 in capacity_channels(capacity.model).items():
        var = norms[name].running_var
        if o2.any():
            print(f"{name}: running variance, theta_o1 {var[~o2].mean():.3f}, theta_o2 {var[o2].mean():.3f}")
        else:
            print(f"{name}: running variance {var.mean():.3f} (not split)")
    big = copy.deepcopy(capacity.model)
    partition_state(big).p_mem = 0.2
    torch.manual_seed(0)
    step1 = SimpleNamespace(fresh_model=lambda: type(big)(**big.arch), log=lambda **_: None)
    _fresh_capacity(step1, big)  # REM's step 1 itself: fresh theta_o2 entries, statistics kept
    x = plain.evaluate.train_batcher.batch(plain.corrupted.corrupted_rows[:2], augment=False)[0]
    widened = expand(plain.model, example_input=x, num_classes=10, seed=0, **WIDEN)
    partition_state(widened).p_mem = 0.2
    for label, task, model in (("capacity", capacity, big), ("plain + expand", plain, widened)):
        train = task.corrupted.train
        rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))[:256]
        x, y, ids = task.evaluate.train_batcher.batch(rows, augment=False)
        forget = discovered_ids(task.corrupted.corrupted_ids, 0.1, seed=0)
        reference = frozen_copy(model)
        with partition(reference, "shared", ids=ids, shared_ids=forget):
            ce_ref = per_sample_ce(reference(x), y).mean()
        with partition(model.train(), "shared", ids=ids, shared_ids=forget):
            ce = per_sample_ce(model(x), y).mean()
        print(f"{label}: masked-mode loss on a D_tr batch, reference (eval BN) {ce_ref:.3f}, model (train BN) {ce:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruption", default="interclass")
    p.add_argument("--rates", default="0.1,1.0")
    p.add_argument("--seeds", default="0")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--epochs", type=float, default=1.0, help="REM's budget in passes over D_tr")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="REM config, e.g. fit=ce")
    p.add_argument("--threads", type=int, help="torch threads (default: the runtime's)")
    p.add_argument("--statistics", action="store_true", help="print the statistics and losses, run nothing")
    a = p.parse_args()
    settings = apply_overrides({}, a.set)  # the CLI's key=value parser (TOML values)
    variants = a.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    threads = [f"runtime.threads={a.threads}"] if a.threads else []
    capacity = task_for(a.corruption, threads)
    plain = task_for(a.corruption, ["model.arch=resnet9-plain", *threads]) if a.statistics or any(v.startswith("plain") for v in variants) else None
    if a.statistics:
        print_statistics(capacity, plain)
        return
    for rate in (float(r) for r in a.rates.split(",")):
        for seed in (int(s) for s in a.seeds.split(",")):
            for variant in variants:
                task = capacity if variant.startswith("capacity") else plain
                forget = discovered_ids(task.corrupted.corrupted_ids, rate, seed=seed)
                model = task.model
                if variant.startswith("plain"):
                    x = task.evaluate.train_batcher.batch(task.corrupted.corrupted_rows[:2], augment=False)[0]
                    model = expand(task.model, example_input=x, num_classes=10, seed=seed, **WIDEN)
                    if variant == "plain-mimic":
                        copy_capacity_statistics(model, capacity.model)
                rem_module.fresh_capacity = (fresh_capacity_with_statistics if variant == "capacity-sane"
                                             else _fresh_capacity)
                try:
                    result = unlearn(model, task.corrupted.train, forget, "rem", runtime=task.runtime,
                                     max_utility_drop=None,
                                     epochs=a.epochs, seed=seed, **settings)
                finally:
                    rem_module.fresh_capacity = _fresh_capacity
                final = discard(result.model) if variant.startswith("plain") else result.model
                m = task.evaluate(final, forget)
                print(json.dumps({"corruption": a.corruption, "rate": rate, "seed": seed, "variant": variant,
                                  "settings": settings, "epochs": a.epochs,
                                  **{k: round(m[k], 2) for k in ("healed", "utility", "score")},
                                  "wall": round(result.wall_time_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
