"""The template of every epoch-based method: a method names its rows and its loss, the template does the rest.

A round is one epoch over :meth:`EpochMethod.rows` with :meth:`EpochMethod.loss`
(or, for SCRUB, the epochs :meth:`EpochMethod.plan` lists), stepped through the
one training loop (:func:`rem_unlearn.training.run_epoch`) with the method's
optimiser, within the step budget.  After every round the observer sees the
model and the proxy selection considers it; the rounds stop when the budget is
spent, after :meth:`EpochMethod.max_rounds`, when a round made no step, or --
for ``until_forgotten`` methods -- once the forget accuracy is at or below
gamma.  The model with the best proxy is returned (:func:`~.common.finish`).
"""

from __future__ import annotations

from typing import ClassVar, Generic

import torch
from torch import nn

from ..training import LossFn, Trainer, run_epoch
from .base import C, Method, UnlearnContext
from .common import finish, start_selection

Plan = list[tuple[torch.Tensor, LossFn, str]]  # one round: (rows, loss, label) per epoch


class EpochMethod(Method[C], Generic[C]):
    """Subclasses implement :meth:`loss` and say which rows it trains on; the hooks below have defaults."""

    until_forgotten: ClassVar[bool] = False  # stop after the first round that leaves D_f at or below gamma

    def rows(self, ctx: UnlearnContext) -> torch.Tensor:
        """The rows an epoch runs over (default: D_r)."""
        return ctx.retain_rows

    def prepare(self, ctx: UnlearnContext, model: nn.Module) -> None:
        """Set up what the loss needs (frozen copies, teachers, masks), before selection starts."""

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def plan(self, ctx: UnlearnContext, model: nn.Module, trainer: Trainer) -> Plan:
        """The epochs of the next round (default: one epoch of :meth:`loss` over :meth:`rows`)."""
        return [(self.rows(ctx), lambda x, y, ids: self.loss(model, x, y, ids), "epoch")]

    def max_rounds(self, ctx: UnlearnContext) -> int | None:
        return None

    def trainer(self, ctx: UnlearnContext, model: nn.Module) -> Trainer:
        return ctx.trainer(what=self.name)

    def frozen(self, model: nn.Module) -> list[nn.Module]:
        """Modules kept in eval mode while training (e.g. BatchNorms of layers that do not train)."""
        return []

    def run(self, ctx: UnlearnContext) -> nn.Module:
        model = ctx.model
        self.prepare(ctx, model)
        selector = start_selection(ctx, model)
        trainer = self.trainer(ctx, model)
        frozen = self.frozen(model)
        limit = self.max_rounds(ctx)
        rnd = 0
        while trainer.steps < ctx.budget and (limit is None or rnd < limit):
            rnd += 1
            before = trainer.steps
            plan = self.plan(ctx, model, trainer)
            for rows, loss_fn, label in plan:
                if len(rows) == 0:
                    continue
                model.train()
                for m in frozen:
                    m.eval()
                run_epoch(trainer, ctx.batcher.epoch(rows, ctx.config.optim.batch_size), loss_fn,
                          max_steps=ctx.budget)
                ctx.log(event=label, round=rnd, steps=trainer.steps)
            name = f"{plan[0][2] if len(plan) == 1 else 'round'} {rnd}"
            ctx.observe(model, name)
            selector.consider(model, name)
            if trainer.steps == before:  # nothing left to train on
                break
            if self.until_forgotten and selector.last_removing <= ctx.config.gamma:
                break
        model.eval()
        return finish(ctx, selector, model)
