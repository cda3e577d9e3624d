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
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import OptimConfig
from ..training import Trainer
from .base import LR_RANGE, UnlearnConfig, UnlearnContext
from .common import NORM_LAYERS, last_layers, naive_optim, reinitialise
from .registry import register_method
from .template import EpochMethod


@dataclass
class CFkConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    k: int = 3  # last k layers are trained; <= 0 = all parameters
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": LR_RANGE, "k": (1, 3, 5)}


@register_method("cf-k")
class CatastrophicForgettingK(EpochMethod[CFkConfig]):
    Config = CFkConfig
    summary = "Fine-tune only the last k layers on D_r (Goel et al. 2024)."
    reinit: ClassVar[bool] = False  # EU-k re-initialises the layers first

    def prepare(self, ctx: UnlearnContext, model: nn.Module) -> None:
        """Choose the layers, (EU-k) re-initialise them, and let only their parameters train.

        The selection's bar is the model training starts from (for EU-k: the re-initialised one).
        """
        k = self.config.k
        modules = dict(model.named_modules())
        if k <= 0:
            self.names = [n for n, m in modules.items() if any(True for _ in m.parameters(recurse=False))]
            self.params = list(model.parameters())
        else:
            self.names = last_layers(ctx, model, k)
            self.params = [p for n in self.names for p in modules[n].parameters(recurse=False)]
        ctx.log(event="layers", k=k, modules=self.names)
        if self.reinit:
            reinitialise(ctx, model, self.names)
            ctx.log(event="reinitialised", modules=self.names)
        trainable = {id(p) for p in self.params}
        self.saved = {p: p.requires_grad for p in model.parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)

    def trainer(self, ctx: UnlearnContext, model: nn.Module) -> Trainer:
        return ctx.trainer(params=self.params, what=self.name)

    def frozen(self, model: nn.Module) -> list[nn.Module]:
        return [m for n, m in model.named_modules() if isinstance(m, NORM_LAYERS) and n not in self.names]

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x).float(), y)

    def run(self, ctx: UnlearnContext) -> nn.Module:
        try:
            return super().run(ctx)
        finally:  # the returned model trains like any other
            for p, flag in getattr(self, "saved", {}).items():
                p.requires_grad_(flag)
