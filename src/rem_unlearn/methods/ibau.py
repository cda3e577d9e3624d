"""i-BAU, Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022).

A minimax problem on clean data: the inner maximisation finds one universal perturbation delta (added to
every image) that breaks the model, the outer minimisation trains the model to classify the perturbed
images correctly.  Since delta*(theta) depends on the weights, the outer gradient carries an implicit term,
d delta*/d theta, computed from the fixed point delta = delta - eta * grad_delta H(delta, theta) by a
truncated Neumann series of K vector-Jacobian products (the paper's fixed-point hypergradient).

Per round: ``inner_steps`` batches of the clean sample with SGD (lr 10) on delta, maximising the
cross-entropy against the model's own predictions with an L2 penalty 0.001 ||delta||^2, then delta is
projected into the ball of radius ``radius``; then ``outer_steps`` outer steps with the hypergradient.
Settings follow the authors' code (Adam at lr 1e-3, K = 5, eta = 0.1, 5 rounds of 50 inner and 50 outer
steps, delta on 1 % of each outer batch, BatchNorm statistics frozen; BackdoorBench runs it at lr 1e-4).
Choices here (docs/methods.md, "Backdoor defences"):
* the clean data is a seeded sample of D_r (:mod:`.clean_data`), which still holds the undiscovered
  corrupted samples below full discovery; i-BAU never reads D_f;
* the outer steps count against the step budget; the shared proxy picks the best round.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError, OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .clean_data import clean_sample
from .common import finish, start_selection
from .registry import register_method
from ..training import Batcher, run_epoch


def ibau_optim() -> OptimConfig:
    return OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant", batch_size=128)


def cycle(batcher: Batcher, rows: torch.Tensor, batch_size: int):
    """Shuffled batches over ``rows``, epoch after epoch."""
    while True:
        yield from batcher.epoch(rows, batch_size)


@dataclass
class IBAUConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=ibau_optim)
    clean_samples: int = 500  # BackdoorBench gives 5 % of the training set
    rounds: int = 5
    neumann_terms: int = 5  # K
    fixed_point_step: float = 0.1  # eta of the fixed-point map
    inner_lr: float = 10.0
    # Steps per round, on delta (inner) and on the weights (outer): the authors' one pass over 5,000 clean
    # images in batches of 100 each; here batches cycle over the clean sample.
    inner_steps: int = 50
    outer_steps: int = 50
    penalty: float = 0.001  # weight of ||delta||^2 in the inner problem
    radius: float = 10.0  # L2 bound of delta (normalised pixel units)
    perturbed_share: float = 0.01  # share of each outer batch that gets delta (at least one image)
    augment: bool = False  # delta is one image-sized tensor: the clean images as stored
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": (3e-5, 1e-4, 3e-4, 1e-3)}

    def validate(self) -> None:
        super().validate()
        if not (self.clean_samples >= 1 and self.rounds >= 1 and min(self.inner_steps, self.outer_steps) >= 1
                and self.neumann_terms >= 0
                and self.fixed_point_step > 0 and self.inner_lr > 0 and self.penalty >= 0 and self.radius > 0
                and 0 < self.perturbed_share <= 1):
            raise ConfigError("ibau needs clean_samples, rounds, inner_steps and outer_steps >= 1, neumann_terms >= 0, "
                              "positive fixed_point_step, inner_lr and radius, penalty >= 0 and perturbed_share in "
                              "(0, 1]")


@register_method("ibau")
class IBAU(Method[IBAUConfig]):
    Config = IBAUConfig
    summary = "Implicit backdoor adversarial unlearning: minimax on clean data with a universal perturbation."

    def universal_perturbation(self, ctx: UnlearnContext, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        x0, _, _ = ctx.eval_batcher.batch(rows[:1])
        delta = torch.zeros_like(x0, dtype=torch.float32, requires_grad=True)
        optimizer = torch.optim.SGD([delta], lr=cfg.inner_lr)
        for x, _y, _ids in itertools.islice(cycle(ctx.eval_batcher, rows, ctx.config.optim.batch_size),
                                            cfg.inner_steps):
            with torch.no_grad(), ctx.runtime.autocast():
                predicted = model(x).argmax(1)
            with ctx.runtime.autocast():
                logits = model(x + delta.to(x.dtype))
            loss = -F.cross_entropy(logits.float(), predicted) + cfg.penalty * delta.pow(2).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            delta.mul_(min(1.0, cfg.radius / max(float(delta.norm()), 1e-12)))
        model.zero_grad(set_to_none=True)
        return delta.detach()

    def hypergradient_loss(self, model: nn.Module, delta: torch.Tensor, x: torch.Tensor,
                           y: torch.Tensor) -> torch.Tensor:
        """The outer loss, with the implicit term folded in: its value is the outer loss, its gradient
        the hypergradient."""
        cfg = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        delta = delta.clone().requires_grad_(True)
        share = max(1, int(cfg.perturbed_share * len(x)))
        chosen = torch.randperm(len(x), device=x.device)[:share]
        patch = torch.zeros_like(x, dtype=torch.float32)
        patch = patch.index_add(0, chosen, delta.expand(share, *delta.shape[1:]))
        outer = F.cross_entropy(model(x + patch.to(x.dtype)).float(), y)
        g_delta, *g_params = torch.autograd.grad(outer, [delta, *params], retain_graph=True, allow_unused=True)
        # the fixed-point map delta -> delta - eta * grad_delta H, with H the inner objective
        inner = -F.cross_entropy(model(x + delta.to(x.dtype)).float(), y) + cfg.penalty * delta.pow(2).sum()
        mapped = delta - cfg.fixed_point_step * torch.autograd.grad(inner, delta, create_graph=True)[0]
        v = torch.zeros_like(g_delta)
        for _ in range(cfg.neumann_terms):  # v = sum_k (J_delta^T)^k g_delta
            v = torch.autograd.grad(mapped, delta, grad_outputs=v, retain_graph=True)[0] + g_delta
        implicit = torch.autograd.grad(mapped, params, grad_outputs=v, allow_unused=True) if cfg.neumann_terms \
            else [None] * len(params)
        surrogate = outer.detach()
        for p, g, h in zip(params, g_params, implicit):
            total = (g if g is not None else 0) + (h if h is not None else 0)
            if isinstance(total, torch.Tensor):
                surrogate = surrogate + (p * total.detach()).sum() - (p.detach() * total.detach()).sum()
        return surrogate

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.model.eval()  # BatchNorm statistics stay as trained
        rows = clean_sample(ctx, cfg.clean_samples)
        selector = start_selection(ctx, model)
        trainer = ctx.trainer(model, what="ibau")
        for rnd in range(1, cfg.rounds + 1):
            if trainer.steps >= ctx.budget:
                break
            delta = self.universal_perturbation(ctx, model, rows)
            batches = itertools.islice(cycle(ctx.batcher, rows, ctx.config.optim.batch_size), cfg.outer_steps)
            run_epoch(trainer, batches, lambda x, y, ids: self.hypergradient_loss(model, delta, x, y),
                      max_steps=ctx.budget)
            ctx.log(event="ibau round", round=rnd, steps=trainer.steps, delta_norm=float(delta.norm()))
            ctx.observe(model, f"round {rnd}")
            selector.consider(model, f"round {rnd}")
        return finish(ctx, selector, model)
