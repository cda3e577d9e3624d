"""Detect, then unlearn: ``discover`` extends the known ids, then Retrain or REM runs on what it found.

The practitioner's answer to label noise -- find the label issues, drop them, retrain (confident learning) --
as methods of the grid.  The scorer sees what every method sees: the trained model, D_tr as stored and the
known rows; its stopping rule chooses how many ids to add (docs/discovery.md).  The found set becomes D_f and
leaves D_r; the inner method then runs as it does alone, with the same step budget, and the detection's time
counts in the method's wall time.  A wrong detection costs what a wrong forget set costs: clean samples
unlearned (utility) and corrupted ones left in D_r.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ConfigError
from .base import UnlearnContext
from .registry import register_method
from .rem import REM, REMConfig
from .retrain import Retrain, RetrainConfig


def _check_scorer(scorer: str) -> None:
    from ..discovery import scorer_config, scorer_names

    if scorer not in scorer_names():
        raise ConfigError(f"scorer={scorer!r}; choose one of: {', '.join(scorer_names())}")
    scorer_config(scorer)


def detected(ctx: UnlearnContext, scorer: str) -> UnlearnContext:
    """``ctx`` with D_f = the known rows plus what ``scorer`` found, D_r = the rest; the model is not modified."""
    from ..discovery import DiscoveryContext, rank

    was_training = ctx.model.training
    found = rank(DiscoveryContext(ctx.model.eval(), ctx.train, ctx.forget_rows, ctx.runtime, pretrain=ctx.pretrain),
                 scorer, seed=ctx.config.seed)
    ctx.model.train(was_training)
    rows = ctx.train.rows_of(found.selected)
    keep = torch.ones(len(ctx.train), dtype=torch.bool)
    keep[rows] = False
    ctx.log(event="detected", scorer=found.scorer, known=len(ctx.forget_rows), forget=len(rows), rule=found.rule,
            estimated_size=found.estimated_size, seconds=found.seconds.get("total"))
    return dataclasses.replace(ctx, forget_rows=rows, retain_rows=ctx.all_rows[keep])


@dataclass
class DetectRetrainConfig(RetrainConfig):
    scorer: str = "auto"  # the discovery scorer (rem-unlearn discover --scorer)

    def validate(self) -> None:
        super().validate()
        _check_scorer(self.scorer)


@register_method("detect-retrain")
class DetectRetrain(Retrain):
    Config = DetectRetrainConfig
    summary = "Discover more of the corruption from the known ids, then retrain without everything found."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        return super().run(detected(ctx, self.config.scorer))


@dataclass
class DetectREMConfig(REMConfig):
    scorer: str = "auto"

    def validate(self) -> None:
        super().validate()
        _check_scorer(self.scorer)


@register_method("detect-rem")
class DetectREM(REM):
    Config = DetectREMConfig
    summary = "Discover more of the corruption from the known ids, then REM on everything found."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        return super().run(detected(ctx, self.config.scorer))
