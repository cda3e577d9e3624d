"""CF-k: catastrophic forgetting of the last k layers (Goel et al., "Corrective Machine Unlearning", 2024).

Only the last ``k`` parameterised layers are fine-tuned on D_r with
cross-entropy; every other layer is frozen (its weights *and* BatchNorm
statistics stay exactly as trained).  Layers are counted in forward order as
Conv/Linear modules, each with the normalisation layers that follow it (a
ResNet-9 ``conv_bn`` block is one layer; the final Linear is the last one);
parameters outside such modules (e.g. a ViT's class token) are frozen unless
``k <= 0``, which trains every parameter (plain fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..config import OptimConfig
from .base import Method, UnlearnConfig, UnlearnContext
from .common import NORM_LAYERS, ce_loss, finish, last_layers, naive_optim, start_selection, train_epochs
from .registry import register_method


@dataclass
class CFkConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    k: int = 3  # last k layers are trained; <= 0 = all parameters


@register_method("cf-k")
class CatastrophicForgettingK(Method):
    Config = CFkConfig
    summary = "Fine-tune only the last k layers on D_r (Goel et al. 2024)."
    reinit = False  # EU-k re-initialises the layers first

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg: CFkConfig = self.config  # type: ignore[assignment]
        model = ctx.model
        modules = dict(model.named_modules())
        if cfg.k <= 0:
            names = [n for n, m in modules.items() if any(True for _ in m.parameters(recurse=False))]
            params = list(model.parameters())
        else:
            names = last_layers(ctx, model, cfg.k)
            params = [p for n in names for p in modules[n].parameters(recurse=False)]
        ctx.log(event="layers", k=cfg.k, modules=names)
        if self.reinit:
            self.prepare(ctx, model, names)
        # The bar is the model training starts from (for EU-k: the re-initialised one).
        selector = start_selection(ctx, model)
        trainable = {id(p) for p in params}
        frozen = [m for n, m in modules.items() if isinstance(m, NORM_LAYERS) and n not in names]
        saved = {p: p.requires_grad for p in model.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        try:
            trainer = ctx.trainer(params=params, what=self.name)
            train_epochs(ctx, model, ctx.retain_rows, ce_loss(model), trainer, selector=selector, frozen=frozen)
        finally:
            for p, flag in saved.items():
                p.requires_grad_(flag)
        return finish(ctx, selector, model)

    def prepare(self, ctx: UnlearnContext, model: nn.Module, names: list[str]) -> None:
        """Hook for subclasses run on the chosen layers before training."""

