"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

Distillation on all of D_tr: samples of D_f are pulled towards the outputs of
a randomly initialised "bad" teacher (a fresh model of the same architecture),
all others towards the trained model; KL at ``temperature`` 1.  Budget steps,
best epoch by the known-data proxy (the official code returns the epoch-6
checkpoint of 10, spec 9.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ConfigError, OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .common import distill_kl, finish, frozen_copy, naive_optim, start_selection, train_epochs
from .registry import register_method


@dataclass
class BadTeacherConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    temperature: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive")


@register_method("bad-teacher")
class BadTeacher(Method):
    Config = BadTeacherConfig
    summary = "Distil D_f from a random teacher and the rest from the original (Chundawat et al. 2023)."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg: BadTeacherConfig = self.config  # type: ignore[assignment]
        model = ctx.model
        good = frozen_copy(model)
        bad = frozen_copy(ctx.fresh_model())
        forget_ids = ctx.forget_ids.to(ctx.runtime.device)
        selector = start_selection(ctx, model)
        trainer = ctx.trainer(what="bad teacher")

        def loss(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                target = torch.where(torch.isin(ids, forget_ids)[:, None], bad(x), good(x))
            return distill_kl(model(x), target, cfg.temperature)

        train_epochs(ctx, model, ctx.all_rows, loss, trainer, selector=selector)
        return finish(ctx, selector, model)
