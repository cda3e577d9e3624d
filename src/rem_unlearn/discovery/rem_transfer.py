"""``rem-transfer`` and ``rem-similarity``: what REM removes together with the known ids (our scorers).

REM redirects the known ids into the added capacity theta_o2 and cuts it away;
its repair epoch fits every other sample through theta_o1 plus its own random
mask over theta_o2, so whatever the kept half cannot explain moves into the
part that is dropped.  The model REM returns (drop mode) has lost what the
known ids share with the rest of the corruption (a backdoor's trigger) and
what only held because it was memorised (a wrong label).  Two scores read it:

* ``rem-transfer``: the rise of each sample's loss on its stored label from
  the trained model to REM's model;
* ``rem-similarity``: the ``similarity`` contrast in REM's penultimate
  features, where a mislabelled sample sits with its true class again, as do
  the known ones: closer to the known samples of its stored label than to
  that label's own population.

REM is used as any user would, through :func:`rem_unlearn.api.unlearn`; a model
without partition gates is expanded first.  One REM run per set of known ids
is shared by both scores: on all known ids for the final scores, and on the
two halves for the held-out ranks, so the pair costs three short REM runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from .base import DiscoveryContext, Scorer, ScorerConfig
from .features import penultimate, stored_label_loss
from .registry import register_scorer
from .similarity import contrast_score


@dataclass
class RemConfig(ScorerConfig):
    epochs: float = 1.0  # REM's step budget in passes over D_tr (the default benchmark's)
    rem: dict[str, Any] = field(default_factory=dict)  # further REM config overrides, e.g. {"optim": {"lr": 0.01}}

    def validate(self) -> None:
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be positive, got {self.epochs}")
        if not isinstance(self.rem, dict):
            raise ConfigError("rem must be a table/mapping of REM config keys")


def rem_model(ctx: DiscoveryContext, known_rows: torch.Tensor, cfg: RemConfig) -> nn.Module:
    """REM's model after a short run with ``known_rows`` as the forget set (cached in ``ctx``)."""
    from ..api import unlearn
    from ..models import expand, gates

    key = ("rem", tuple(sorted(known_rows.tolist())), cfg.epochs, cfg.seed, repr(sorted(cfg.rem.items())))
    if key not in ctx.cache:
        model = ctx.model
        if not gates(model):
            x, _, _ = ctx.batcher.batch(torch.arange(min(2, len(ctx.train))), augment=False)
            model = expand(model, example_input=x, seed=cfg.seed)
        overrides = {"epochs": cfg.epochs, "select_best": False, "seed": cfg.seed, **cfg.rem}
        ctx.cache[key] = unlearn(model, ctx.train, ctx.train.ids[known_rows], "rem", runtime=ctx.runtime,
                                 pretrain=ctx.pretrain, max_utility_drop=None, **overrides).model
    return ctx.cache[key]


class RemScorer(Scorer):
    Config = RemConfig
    folds = 2  # each half of the known ids is held out of one REM run


@register_scorer("rem-transfer")
class RemTransfer(RemScorer):
    summary = "rise of the stored-label loss after a short REM run on the known ids"

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        if "loss" not in ctx.cache:
            ctx.cache["loss"] = stored_label_loss(ctx.model, ctx.batcher)
        return stored_label_loss(rem_model(ctx, known_rows, self.config), ctx.batcher) - ctx.cache["loss"]


@register_scorer("rem-similarity")
class RemSimilarity(RemScorer):
    summary = "the similarity contrast in the features of the model a short REM run returns"

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        return contrast_score(ctx, penultimate(rem_model(ctx, known_rows, self.config), ctx.batcher), known_rows)
