"""ANP, Adversarial Neuron Pruning (Wu and Wang, NeurIPS 2021): prune the neurons a backdoor leans on.

A neuron is one channel of a BatchNorm layer.  Each gets a mask m in [0, 1] (start 1) on its scale, and
adversarial multiplicative perturbations of its scale and shift (within +-eps).  The masks minimise

    alpha * CE(model with masks) + (1 - alpha) * CE(model with masks + perturbations, perturbed shifts)

on clean data, the perturbations being one signed ascent step from a random start each iteration: a backdoor
lives in neurons whose perturbation breaks the model, so their masks fall.  Neurons are then pruned (their
BatchNorm scale set to 0) in increasing mask order.

Choices here (docs/methods.md, "Backdoor defences"):
* the clean data is a seeded sample of D_r (:mod:`.clean_data`), which still holds the undiscovered
  corrupted samples below full discovery; ANP never reads D_f;
* the mask optimisation counts against the step budget like every training step, at most ``iterations``;
* the masks are learned on a copy in train mode and the pruning is applied to the model as given, so the
  copy's BatchNorm statistics (moved by perturbed passes) never reach the result;
* how many neurons to prune: the paper's threshold rule (mask < ``threshold``) when ``select_best`` is
  off; with it, the shared proxy (known data only) chooses among that rule and pruning the lowest
  ``prune_step``, 2 x ``prune_step``, ... up to ``prune_max`` of the neurons (the paper's pruning by number).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from ..config import ConfigError, OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .clean_data import clean_sample
from .common import finish, start_selection
from .registry import register_method
from ..training import run_epoch


@dataclass
class ANPConfig(UnlearnConfig):
    clean_samples: int = 500  # the paper's 1 % of the training set (500 CIFAR-10 images)
    eps: float = 0.4  # bound of the multiplicative neuron perturbations
    trade_off: float = 0.2  # alpha: weight of the unperturbed loss
    mask_lr: float = 0.2  # SGD, momentum 0.9
    iterations: int = 2000  # mask optimisation steps; the step budget caps them
    threshold: float = 0.2  # the paper's pruning rule: prune masks below it
    prune_step: float = 0.01  # pruning by number: candidates are multiples of this share of the neurons
    prune_max: float = 0.1
    search_space: ClassVar[dict[str, tuple]] = {"eps": (0.2, 0.4, 0.6), "trade_off": (0.1, 0.2, 0.5)}

    def validate(self) -> None:
        super().validate()
        if not (self.eps > 0 and 0.0 <= self.trade_off <= 1.0 and self.mask_lr > 0 and self.iterations >= 1
                and 0.0 < self.threshold < 1.0 and 0.0 < self.prune_step <= self.prune_max <= 1.0
                and self.clean_samples >= 1):
            raise ConfigError("anp needs eps > 0, trade_off in [0, 1], mask_lr > 0, iterations >= 1, threshold in "
                              "(0, 1), 0 < prune_step <= prune_max <= 1 and clean_samples >= 1")


def batchnorms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers with a scale and shift: ANP's neurons are their channels."""
    found = {n: m for n, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine}
    if not found:
        raise ConfigError(f"anp prunes BatchNorm channels, and {type(model).__name__} has no BatchNorm layer with a "
                          "scale; use another method for this model")
    return found


@register_method("anp")
class ANP(Method[ANPConfig]):
    Config = ANPConfig
    summary = "Adversarial Neuron Pruning: prune the BatchNorm channels that break under small perturbations."

    def masks(self, ctx: UnlearnContext, model: nn.Module) -> dict[str, torch.Tensor]:
        """The learned mask of every BatchNorm channel (1 = kept), on a train-mode copy of ``model``."""
        cfg = self.config
        work = copy.deepcopy(model).train().requires_grad_(False)
        norms = batchnorms(work)
        device = next(work.parameters()).device
        masks = {n: torch.ones(m.num_features, device=device, requires_grad=True) for n, m in norms.items()}

        def call(x: torch.Tensor, noise: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> torch.Tensor:
            params = {}
            for n, m in norms.items():
                scale = masks[n] if noise is None else masks[n] + noise[n][0]
                params[f"{n}.weight"] = m.weight * scale
                if noise is not None:
                    params[f"{n}.bias"] = m.bias * (1.0 + noise[n][1])
            return functional_call(work, params, (x,))

        def loss(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                for mask in masks.values():
                    mask.clamp_(0.0, 1.0)
            noise = {n: tuple((torch.rand(m.num_features, device=device) * 2 - 1) * cfg.eps for _ in range(2))
                     for n, m in norms.items()}
            leaves = [t.requires_grad_(True) for pair in noise.values() for t in pair]
            grads = torch.autograd.grad(F.cross_entropy(call(x, noise).float(), y), leaves)
            with torch.no_grad():  # one signed ascent step, back into the budget
                for t, g in zip(leaves, grads):
                    t.add_(cfg.eps * g.sign()).clamp_(-cfg.eps, cfg.eps)
            noise = {n: (a.detach(), b.detach()) for n, (a, b) in noise.items()}
            natural = F.cross_entropy(call(x, None).float(), y)
            perturbed = F.cross_entropy(call(x, noise).float(), y)
            return cfg.trade_off * natural + (1.0 - cfg.trade_off) * perturbed

        rows = clean_sample(ctx, cfg.clean_samples)
        steps = min(cfg.iterations, ctx.budget)
        optim = OptimConfig(optimizer="sgd", lr=cfg.mask_lr, momentum=0.9, weight_decay=0.0, schedule="constant",
                            batch_size=ctx.config.optim.batch_size)
        trainer = ctx.trainer(work, params=list(masks.values()), what="anp", optim=optim, total_steps=steps)
        run_epoch(trainer, ctx.batches(rows), loss, max_steps=steps)
        ctx.log(event="anp masks", steps=trainer.steps, clean=len(rows))
        return {n: m.detach().clamp(0.0, 1.0) for n, m in masks.items()}

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.model.eval()
        masks = self.masks(ctx, model)
        flat = torch.cat([m.flatten().cpu() for m in masks.values()])
        order = torch.argsort(flat, stable=True)
        norms = batchnorms(model)
        original = {n: norms[n].weight.detach().clone() for n in norms}

        def pruned(count: int) -> None:
            prune = torch.zeros(len(flat), dtype=torch.bool)
            prune[order[:count]] = True
            start = 0
            with torch.no_grad():
                for n, m in norms.items():
                    size = m.num_features
                    keep = ~prune[start:start + size].to(m.weight.device)
                    m.weight.copy_(original[n] * keep)
                    start += size

        by_threshold = int((flat < cfg.threshold).sum())
        step = max(1, round(cfg.prune_step * len(flat)))
        counts = sorted({by_threshold, *range(step, int(cfg.prune_max * len(flat)) + 1, step)} - {0})
        ctx.log(event="anp", neurons=len(flat), below_threshold=by_threshold)
        if not cfg.select_best:
            pruned(by_threshold)
            return model
        selector = start_selection(ctx, model)
        for count in counts:
            pruned(count)
            label = f"pruned {count}" + (" (threshold)" if count == by_threshold else "")
            ctx.observe(model, label)
            selector.consider(model, label)
        return finish(ctx, selector, model)
