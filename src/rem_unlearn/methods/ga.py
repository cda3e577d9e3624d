"""Gradient ascent on D_f (docs/paper.md §5, "Ascent"), no retain data.

Maximises the cross-entropy of D_f with its stored (corrupted) labels, epoch
by epoch, until the forget accuracy is at or below gamma (at least one epoch),
with a constant learning rate.  The official code has no epoch cap; here the
step budget caps it (``max_epochs`` adds an optional cap).  Best epoch by the
known-data proxy, whose bar is the original model (the official code starts
the bar at 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError
from .base import LR_RANGE, Times, UnlearnConfig, UnlearnContext
from .registry import register_method
from .template import EpochMethod


@dataclass
class GAConfig(UnlearnConfig):
    max_epochs: int | None = None  # None: only the step budget and gamma stop it
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": (Times(0.25), *LR_RANGE)}

    def validate(self) -> None:
        super().validate()
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError("max_epochs must be >= 1")


@register_method("ga")
class GradientAscent(EpochMethod[GAConfig]):
    Config = GAConfig
    summary = "Gradient ascent on D_f until its accuracy <= gamma."
    until_forgotten = True

    def rows(self, ctx: UnlearnContext) -> torch.Tensor:
        return ctx.forget_rows

    def max_rounds(self, ctx: UnlearnContext) -> int | None:
        return self.config.max_epochs

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(model(x).float(), y)
