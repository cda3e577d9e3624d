"""No unlearning: the trained model itself ("Trained" / starting point of the benchmark)."""

from __future__ import annotations

from torch import nn

from .base import Method, UnlearnContext
from .registry import register_method


@register_method("none")
class NoUnlearning(Method):
    """Returns the trained model unchanged (the context's private copy, so the caller's model is untouched)."""

    summary = "No unlearning: the trained (corrupted) model, the benchmark's starting point."
    gradient_based = False

    def run(self, ctx: UnlearnContext) -> nn.Module:
        ctx.log(event="unchanged")
        return ctx.model
