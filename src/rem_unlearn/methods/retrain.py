"""Retrain ("EU" in the benchmark): re-initialise every weight and train on D_r only.

D_r still holds the undiscovered corrupted samples, so retraining is "not a
silver bullet" under partial discovery (docs/paper.md §5).  With the pre-training recipe
(``ctx.pretrain``) the model is trained like the original (per-example masks
through ``training.train_model``, drop mode at inference) for the recipe's
epochs over D_r; without one, for the step budget with this config's optimiser.

Differences from the official REM repository: no model selection -- the
official code keeps the checkpoint with the best *test* accuracy, which we
never look at; the final model is returned.  The official EU trains with the
unlearning lr (0.005) for the pre-training step count; we use the recipe's own
lr unless ``lr`` is set (``lr=0.005`` reproduces the official choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from torch import nn

from ..config import ConfigError, OptimConfig, TrainConfig
from ..training import train_model
from .base import Method, UnlearnConfig, UnlearnContext
from .common import naive_optim
from .registry import register_method


@dataclass
class RetrainConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)  # used only without a pre-training recipe
    lr: float | None = None  # overrides the recipe's (or optim's) peak lr; official EU: 0.005
    budget_capped: bool = False  # with a recipe: stop after the unlearning step budget as well
    recipe_epochs: int | None = None  # with a recipe: train this many epochs instead of the recipe's own

    def validate(self) -> None:
        super().validate()
        if self.lr is not None and self.lr <= 0:
            raise ConfigError("lr must be positive")
        if self.recipe_epochs is not None and self.recipe_epochs < 1:
            raise ConfigError(f"recipe_epochs must be >= 1, got {self.recipe_epochs}")


@register_method("retrain")
class Retrain(Method[RetrainConfig]):
    Config = RetrainConfig
    summary = "Re-initialise and train on D_r only; the final model is returned (no test-set selection)."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        cfg = self.config
        model = ctx.fresh_model()
        retain = ctx.train.subset(ctx.retain_rows)  # ids follow the subset, so per-example masks do too
        if ctx.pretrain is not None:
            recipe = ctx.pretrain
            if cfg.lr is not None:
                recipe = replace(recipe, optim=replace(recipe.optim, lr=cfg.lr))
            if cfg.recipe_epochs is not None:  # the schedule (warm-up, decay) is rescaled to the shorter run
                recipe = replace(recipe, epochs=cfg.recipe_epochs)
            max_steps = ctx.budget if cfg.budget_capped else None
        else:
            optim = cfg.optim if cfg.lr is None else replace(cfg.optim, lr=cfg.lr)
            per_epoch = math.ceil(len(retain) / optim.batch_size)
            recipe = TrainConfig(optim=optim, epochs=max(1, math.ceil(ctx.budget / per_epoch)), augment=cfg.augment,
                                 crop_padding=cfg.crop_padding, seed=cfg.seed)
            max_steps = ctx.budget
        history = train_model(model, retain, recipe, ctx.runtime, desc="retrain",
                              max_steps=max_steps)
        for row in history:
            ctx.log(event="retrain", **row)
        return model
