"""SSD: Selective Synaptic Dampening (Foster, Schoepf and Brintrup, AAAI 2024).

Importances are diagonal Fisher estimates: the mean over mini-batches of the
squared gradient of the cross-entropy (stored labels, eval-mode BN,
non-augmented images), once on D_f and once on the reference set (all of D_tr
as in the paper, or D_r).  Entries with imp_f > alpha x imp_ref are multiplied
by min(1, lambda x imp_ref / imp_f); all other entries are left untouched.
No gradient training.  Not in the REM paper's run script (docs/paper.md §5).

The SSD paper sets alpha per task (10 for its CIFAR privacy settings).  With
``alpha=None`` (the default) alpha comes from the published test-free rule
for it, the PTN search of Potion (Schoepf et al. 2024; shared with
:mod:`.potion`): the smallest selection that brings the D_f accuracy down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..config import ConfigError
from .base import Method, UnlearnConfig, UnlearnContext
from .common import active_entries, ce_objective, dampen, importances, neutralisation_search
from .registry import register_method


@dataclass
class SSDConfig(UnlearnConfig):
    alpha: float | None = None  # selection weighting; None: the PTN search picks it per task, test-free
    lam: float = 1.0  # dampening constant lambda
    reference: str = "train"  # importances of the reference set: "train" (D_tr, the paper) or "retain" (D_r)
    p_cut: float = 0.2  # PTN search: accept when forget accuracy <= p_cut x the original's
    step_mult: float = 1.1
    max_tries: int = 50
    search_space: ClassVar[dict[str, tuple]] = {"lam": (0.5, 1.0, 2.0), "p_cut": (0.1, 0.2, 0.4)}

    def validate(self) -> None:
        super().validate()
        if self.reference not in ("train", "retain"):
            raise ConfigError(f"reference={self.reference!r}; choose train or retain")
        if (self.alpha is not None and self.alpha <= 0) or self.lam <= 0:
            raise ConfigError("alpha and lam must be positive")
        if self.step_mult <= 1.0 or self.max_tries < 1 or not 0.0 <= self.p_cut <= 1.0:
            raise ConfigError("need step_mult > 1, max_tries >= 1, p_cut in [0, 1]")


@register_method("ssd")
class SSD(Method[SSDConfig]):
    Config = SSDConfig
    summary = "Dampen parameters far more important to D_f than to D_tr (Foster et al. 2024)."
    gradient_based = False

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.model
        imp_f = importances(ctx, model, ctx.forget_rows, ce_objective, reduce="square")
        ref_rows = ctx.all_rows if cfg.reference == "train" else ctx.retain_rows
        imp_r = importances(ctx, model, ref_rows, ce_objective, reduce="square")
        if cfg.alpha is None:
            return neutralisation_search(ctx, model, imp_f, imp_r, lam=cfg.lam, p_cut=cfg.p_cut,
                                         step_mult=cfg.step_mult, max_tries=cfg.max_tries, event="ssd")
        selected = dampen(model, imp_f, imp_r, cfg.alpha, cfg.lam, within=active_entries(model))
        n = sum(int(s.sum()) for s in selected.values())
        ctx.log(event="dampened", selected=n, alpha=cfg.alpha, lam=cfg.lam)
        return model
