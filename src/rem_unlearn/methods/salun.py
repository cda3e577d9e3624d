"""SalUn, the published method (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based
Weight Saliency in Both Image Classification and Generation", ICLR 2024).

1. Weight saliency: the gradient of the forget loss CE(D_f) (stored labels,
   drop mode, eval-mode BN, non-augmented images, averaged over D_f's
   mini-batches); the mask keeps the ``density`` fraction of entries with the
   largest |gradient|, one global threshold over all parameters.  For a
   partitioned ResNet-9 the population is the entries the drop-mode model uses
   (theta_o2-only entries get no gradient and are never salient).
2. Random labelling: every D_f sample gets a random label different from its
   stored one (drawn once, seeded), and the model is trained with
   cross-entropy on D_f (random labels) and D_r (stored labels) together,
   updating only the salient entries (the Trainer masks their gradients and
   keeps every other entry bit-identical, weight decay included).

This is *not* the "SalUn" of the official REM repository, which is an
input-saliency penalty (CE on the non-discovered samples + alpha x the forget
CE's grad x input on the discovered ones, docs/paper.md §5 / 9.14).  Budget steps, best
epoch by the known-data proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError, OptimConfig
from ..training import Trainer
from .base import LR_RANGE, UnlearnConfig, UnlearnContext
from .common import active_entries, ce_objective, importances, naive_optim
from .registry import register_method
from .template import EpochMethod


@dataclass
class SalUnConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    density: float = 0.5  # fraction of (used) parameter entries that may change
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": LR_RANGE, "density": (0.3, 0.5, 0.7)}

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"density must be in (0, 1], got {self.density}")


def saliency_masks(ctx: UnlearnContext, model: nn.Module, density: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the salient entries: the top ``density`` fraction of |dCE(D_f)/dtheta|, globally."""
    grads = importances(ctx, model, ctx.forget_rows, ce_objective, reduce="grad")
    active = active_entries(model)
    names = list(grads)
    scores = torch.cat([torch.where(active[n], grads[n].abs(), torch.full_like(grads[n], -1.0)).flatten()
                        for n in names])
    n_active = int(sum(int(active[n].sum()) for n in names))
    k = min(n_active, int(round(density * n_active)))
    flat = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    flat[torch.topk(scores, k, sorted=False).indices] = True
    masks, start = {}, 0
    for n in names:
        size = grads[n].numel()
        masks[n] = flat[start:start + size].view_as(grads[n])
        start += size
    ctx.log(event="saliency", density=k / max(1, n_active), salient=k, population=n_active)
    return masks


def random_relabel(ctx: UnlearnContext, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sorted D_f ids, their new labels): uniform over the classes other than the stored label."""
    classes = ctx.train.num_classes
    if classes < 2:
        raise ValueError("random relabelling needs at least two classes")
    g = torch.Generator().manual_seed(seed)
    stored = ctx.train.labels[ctx.forget_rows]
    new = (stored + torch.randint(1, classes, (len(stored),), generator=g)) % classes
    order = torch.argsort(ctx.forget_ids)
    dev = ctx.runtime.device
    return ctx.forget_ids[order].to(dev), new[order].to(dev)


@register_method("salun")
class SalUn(EpochMethod[SalUnConfig]):
    Config = SalUnConfig
    summary = "Weight-saliency masked random labelling (Fan et al., ICLR 2024)."

    def rows(self, ctx: UnlearnContext) -> torch.Tensor:
        return ctx.all_rows

    def prepare(self, ctx: UnlearnContext, model: nn.Module) -> None:
        self.masks = saliency_masks(ctx, model, self.config.density)
        self.forget_ids, self.new_labels = random_relabel(ctx, self.config.seed + 104729)

    def trainer(self, ctx: UnlearnContext, model: nn.Module) -> Trainer:
        params = dict(model.named_parameters())
        return ctx.trainer(what="SalUn", grad_masks={params[n]: m for n, m in self.masks.items()})

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.searchsorted(self.forget_ids, ids).clamp(max=len(self.forget_ids) - 1)
        target = torch.where(self.forget_ids[pos] == ids, self.new_labels[pos], y)
        return F.cross_entropy(model(x).float(), target)
