"""Potion (Schoepf, Foster and Brintrup, "Potion: Towards Poison Unlearning", 2024) -- "XALFSSD" in spec 5.

Adaptive, label-free Selective Synaptic Dampening:

* importances are the mini-batch mean of |d ||logits||_2 / d theta| (no
  labels needed; LFSSD), once on D_r and once on D_f, computed once;
* with f = |D_f| / |D_tr|, the selection threshold alpha is the
  (100 - ln(1 + 100 f))-th percentile of imp_f / imp_r over the parameter
  entries (those the drop-mode model uses);
* selected entries (imp_f > alpha imp_r) are multiplied by min(1, imp_r / imp_f);
* accepted once the D_f accuracy is <= p_cut x the original's or <= gamma;
  otherwise the weights are restored, f <- step_mult x f (a lower percentile,
  more entries) and it retries, at most ``max_tries`` times.  When no try is
  accepted the last one is returned.

No gradient training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from .base import Method, UnlearnConfig, UnlearnContext
from .common import active_entries, dampen, importance_ratio, importances, logit_norm, percentile
from .registry import register_method


@dataclass
class PotionConfig(UnlearnConfig):
    step_mult: float = 1.1
    max_tries: int = 50
    p_cut: float = 0.2  # accept when forget accuracy <= p_cut x the original's
    lam: float = 1.0  # dampening constant

    def validate(self) -> None:
        super().validate()
        if self.step_mult <= 1.0 or self.max_tries < 1 or not 0.0 <= self.p_cut <= 1.0 or self.lam <= 0:
            raise ConfigError("need step_mult > 1, max_tries >= 1, p_cut in [0, 1], lam > 0")


def potion_percentile(f: float) -> float:
    """The selection percentile for forget fraction f: 100 - ln(1 + 100 f), clipped to [0, 100]."""
    return min(100.0, max(0.0, 100.0 - math.log1p(100.0 * f)))


@register_method("potion")
class Potion(Method):
    Config = PotionConfig
    summary = "Adaptive label-free synaptic dampening (Schoepf et al. 2024)."
    gradient_based = False

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg: PotionConfig = self.config  # type: ignore[assignment]
        model = ctx.model
        imp_r = importances(ctx, model, ctx.retain_rows, logit_norm, reduce="abs")
        imp_f = importances(ctx, model, ctx.forget_rows, logit_norm, reduce="abs")
        active = active_entries(model)
        ratios = torch.cat([importance_ratio(imp_f[n], imp_r[n])[active[n]] for n in imp_f])
        original = {n: p.detach().clone() for n, p in model.named_parameters()}
        start_acc = ctx.forget_accuracy(model)
        f = len(ctx.forget_rows) / len(ctx.train)
        for attempt in range(1, cfg.max_tries + 1):
            if attempt > 1:
                self.restore(model, original)
            q = potion_percentile(f)
            alpha = percentile(ratios, q)
            selected = dampen(model, imp_f, imp_r, alpha, cfg.lam, within=active)
            acc = ctx.forget_accuracy(model)
            accepted = acc <= cfg.p_cut * start_acc or acc <= cfg.gamma
            ctx.log(event="potion", attempt=attempt, f=f, percentile=q, alpha=alpha, forget_accuracy=acc,
                    selected=sum(int(s.sum()) for s in selected.values()), accepted=accepted)
            if accepted:
                break
            f *= cfg.step_mult
        return model

    @staticmethod
    @torch.no_grad()
    def restore(model: nn.Module, original: dict[str, torch.Tensor]) -> None:
        for n, p in model.named_parameters():
            p.copy_(original[n])
