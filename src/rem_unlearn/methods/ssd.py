"""SSD: Selective Synaptic Dampening (Foster, Schoepf and Brintrup, AAAI 2024).

Importances are diagonal Fisher estimates: the mean over mini-batches of the
squared gradient of the cross-entropy (stored labels, eval-mode BN,
non-augmented images), once on D_f and once on the reference set (all of D_tr
as in the paper, or D_r).  Entries with imp_f > alpha x imp_ref are multiplied
by min(1, lambda x imp_ref / imp_f); all other entries are left untouched.
No gradient training.  Not in the REM paper's run script (spec 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..config import ConfigError
from .base import Method, UnlearnConfig, UnlearnContext
from .common import active_entries, ce_objective, dampen, importances
from .registry import register_method


@dataclass
class SSDConfig(UnlearnConfig):
    alpha: float = 10.0  # selection weighting
    lam: float = 1.0  # dampening constant lambda
    reference: str = "train"  # importances of the reference set: "train" (D_tr, the paper) or "retain" (D_r)

    def validate(self) -> None:
        super().validate()
        if self.reference not in ("train", "retain"):
            raise ConfigError(f"reference={self.reference!r}; choose train or retain")
        if self.alpha <= 0 or self.lam <= 0:
            raise ConfigError("alpha and lam must be positive")


@register_method("ssd")
class SSD(Method):
    Config = SSDConfig
    summary = "Dampen parameters far more important to D_f than to D_tr (Foster et al. 2024)."
    gradient_based = False

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg: SSDConfig = self.config  # type: ignore[assignment]
        model = ctx.model
        imp_f = importances(ctx, model, ctx.forget_rows, ce_objective, reduce="square")
        ref_rows = ctx.all_rows if cfg.reference == "train" else ctx.retain_rows
        imp_r = importances(ctx, model, ref_rows, ce_objective, reduce="square")
        selected = dampen(model, imp_f, imp_r, cfg.alpha, cfg.lam, within=active_entries(model))
        n = sum(int(s.sum()) for s in selected.values())
        ctx.log(event="dampened", selected=n, alpha=cfg.alpha, lam=cfg.lam)
        return model
