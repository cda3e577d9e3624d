"""Bad Teacher (Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023).

Distillation on all of D_tr: samples of D_f are pulled towards the outputs of
a randomly initialised "bad" teacher (a fresh model of the same architecture),
all others towards the trained model; KL at ``temperature`` 1.  Budget steps,
best epoch by the known-data proxy (the official code returns the epoch-6
checkpoint of 10, docs/paper.md §9.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..config import ConfigError, OptimConfig
from .base import LR_RANGE, UnlearnConfig, UnlearnContext
from .common import distill_kl, frozen_copy, naive_optim
from .registry import register_method
from .template import EpochMethod


@dataclass
class BadTeacherConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    temperature: float = 1.0
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": LR_RANGE, "temperature": (1.0, 4.0)}

    def validate(self) -> None:
        super().validate()
        if self.temperature <= 0:
            raise ConfigError("temperature must be positive")


@register_method("bad-teacher")
class BadTeacher(EpochMethod[BadTeacherConfig]):
    Config = BadTeacherConfig
    summary = "Distil D_f from a random teacher and the rest from the original (Chundawat et al. 2023)."

    def rows(self, ctx: UnlearnContext) -> torch.Tensor:
        return ctx.all_rows

    def prepare(self, ctx: UnlearnContext, model: nn.Module) -> None:
        self.good = frozen_copy(model)
        self.bad = frozen_copy(ctx.fresh_model())
        self.forget_ids = ctx.forget_ids.to(ctx.runtime.device)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        # The teachers run in eval mode, so each row's output is its own: the random teacher needs only the
        # few D_f rows of the batch, not a forward pass over all of it.
        with torch.no_grad():
            target = self.good(x)
            forget = torch.isin(ids, self.forget_ids)
            if forget.any():
                target[forget] = self.bad(x[forget]).to(target.dtype)
        return distill_kl(model(x), target, self.config.temperature)
