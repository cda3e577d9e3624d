"""Potion (Schoepf, Foster and Brintrup, "Potion: Towards Poison Unlearning", 2024) -- "XALFSSD" in docs/paper.md §5.

Adaptive, label-free Selective Synaptic Dampening: importances are the
mini-batch mean of |d ||logits||_2 / d theta| (no labels needed; LFSSD), once on
D_r and once on D_f, and the dampening threshold comes from the PTN search
(:func:`~.common.neutralisation_search`: a percentile set by the forget
fraction, lowered until the D_f accuracy falls to ``p_cut`` x the original's).
No gradient training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..config import ConfigError
from .base import Method, UnlearnConfig, UnlearnContext
from .common import importances, logit_norm, neutralisation_search
from .registry import register_method


@dataclass
class PotionConfig(UnlearnConfig):
    step_mult: float = 1.1
    max_tries: int = 50
    p_cut: float = 0.2  # accept when forget accuracy <= p_cut x the original's
    lam: float = 1.0  # dampening constant
    search_space: ClassVar[dict[str, tuple]] = {"lam": (0.5, 1.0, 2.0), "p_cut": (0.1, 0.2, 0.4)}

    def validate(self) -> None:
        super().validate()
        if self.step_mult <= 1.0 or self.max_tries < 1 or not 0.0 <= self.p_cut <= 1.0 or self.lam <= 0:
            raise ConfigError("need step_mult > 1, max_tries >= 1, p_cut in [0, 1], lam > 0")


@register_method("potion")
class Potion(Method[PotionConfig]):
    Config = PotionConfig
    summary = "Adaptive label-free synaptic dampening (Schoepf et al. 2024)."
    gradient_based = False

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.model
        imp_r = importances(ctx, model, ctx.retain_rows, logit_norm, reduce="abs")
        imp_f = importances(ctx, model, ctx.forget_rows, logit_norm, reduce="abs")
        return neutralisation_search(ctx, model, imp_f, imp_r, lam=cfg.lam, p_cut=cfg.p_cut,
                                     step_mult=cfg.step_mult, max_tries=cfg.max_tries, event="potion")
