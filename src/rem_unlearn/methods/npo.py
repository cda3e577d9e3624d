"""NPO on D_f only (Zhang et al. 2024, "Negative Preference Optimization"); REM's "no step 3" ablation.

Per sample, -(2/beta) log sigmoid(beta (CE_model - CE_ref)) with a frozen copy
of the trained model as reference, both in drop mode; epoch by epoch until the
forget accuracy is at or below gamma, constant learning rate.  The official
code charges every NPO epoch as one pass over D_tr (98 steps), i.e. at most
"budget epochs" epochs; ``max_epochs=None`` keeps that rule, and the real
step count never exceeds the budget either.  Best epoch by the known-data proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import ConfigError
from .base import LR_RANGE, UnlearnConfig, UnlearnContext, npo_removal, per_sample_ce
from .common import frozen_copy
from .registry import register_method
from .template import EpochMethod


@dataclass
class NPOConfig(UnlearnConfig):
    beta: float = 1.0
    max_epochs: int | None = None  # None: budget / steps per D_tr epoch (each epoch charged as a D_tr pass)
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": LR_RANGE, "beta": (0.1, 0.5, 1.0)}

    def validate(self) -> None:
        super().validate()
        if self.beta <= 0:
            raise ConfigError("beta must be positive")
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError("max_epochs must be >= 1")


@register_method("npo")
class NPO(EpochMethod[NPOConfig]):
    Config = NPOConfig
    summary = "NPO on D_f (frozen reference) until its accuracy <= gamma; REM without step 3."
    until_forgotten = True

    def rows(self, ctx: UnlearnContext) -> torch.Tensor:
        return ctx.forget_rows

    def max_rounds(self, ctx: UnlearnContext) -> int | None:
        return self.config.max_epochs or max(1, round(ctx.budget / ctx.steps_per_epoch))

    def prepare(self, ctx: UnlearnContext, model: nn.Module) -> None:
        self.reference = frozen_copy(model)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ce_ref = per_sample_ce(self.reference(x), y)
        return npo_removal(per_sample_ce(model(x), y), ce_ref, self.config.beta).mean()
