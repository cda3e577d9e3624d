"""Fine-tune ("CF" in the benchmark): cross-entropy on D_r for the step budget.

Catastrophic forgetting of D_f by continued training on the retain set (Goel
et al. 2024 use it as the k = all case of CF-k).  Best epoch by the known-data
proxy (the official code returns the epoch-6 checkpoint of 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .common import ce_loss, finish, naive_optim, start_selection, train_epochs
from .registry import register_method


@dataclass
class FinetuneConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)


@register_method("finetune")
class Finetune(Method):
    Config = FinetuneConfig
    summary = "Fine-tune on D_r with cross-entropy (catastrophic forgetting)."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        model = ctx.model
        selector = start_selection(ctx, model)
        trainer = ctx.trainer(what="finetune")
        train_epochs(ctx, model, ctx.retain_rows, ce_loss(model), trainer, selector=selector)
        return finish(ctx, selector, model)
