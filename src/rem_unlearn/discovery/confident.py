"""``confident-learning``: cleanlab on out-of-sample probabilities (Northcutt et al. 2021).

A model that memorised its training set gives every stored label a probability
near 1, so its own probabilities say nothing.  As cleanlab's documentation
recommends, the probabilities come from K-fold cross-validation instead: K
fresh copies of the model's architecture are trained with the package's
training loop, each on K-1 folds for a few epochs (too few to memorise the
corruption), and predict the fold they did not see.  cleanlab's label quality
(self-confidence) ranks the samples.

With ``known_transitions`` (the default) the known ids also say *which* label
changes the corruption makes: their out-of-sample class probabilities give a
smoothed matrix T(stored | true), and a sample scores by the likelihood ratio
``sum_c p(c|x) T(y|c) / p(y|x)``.  For random labels T is flat and this is
cleanlab's ranking; for a swap of two classes it keeps only that pair.

Cost: K trainings of ``epochs`` passes over (K-1)/K of the data (docs/discovery.md).
Needs the ``detect`` extra: ``pip install rem-unlearn[detect]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import ConfigError, OptimConfig, TrainConfig
from ..training import train_model
from .base import DiscoveryContext, MissingExtraError, Scorer, ScorerConfig, known_folds
from .features import probabilities
from .registry import register_scorer


def require_cleanlab():
    try:
        import cleanlab.rank
    except ImportError:
        raise MissingExtraError("scorer confident-learning needs cleanlab: pip install 'rem-unlearn[detect]'") from None
    return cleanlab.rank


@dataclass
class ConfidentConfig(ScorerConfig):
    folds: int = 4
    epochs: int = 3  # per fold model; few enough not to memorise (the default model memorises in 20)
    augment: bool = False
    optim: OptimConfig | None = None  # default: the model's training recipe when known, else SGD lr 0.05 batch 128
    known_transitions: bool = True
    smoothing: float = 0.1  # pseudo-count per cell of T

    def validate(self) -> None:
        if self.folds < 2 or self.epochs < 1:
            raise ConfigError("folds must be at least 2 and epochs at least 1")
        if self.smoothing <= 0:
            raise ConfigError(f"smoothing must be positive, got {self.smoothing}")


def fresh_copy(model: nn.Module) -> nn.Module:
    """The same architecture with newly initialised weights (any module with ``reset_parameters``)."""
    new = copy.deepcopy(model)
    for m in new.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return new


@register_scorer("confident-learning")
class ConfidentLearning(Scorer):
    summary = "cleanlab label quality on K-fold out-of-sample probabilities ([detect] extra)"
    Config = ConfidentConfig

    def __init__(self, config: ConfidentConfig | None = None):
        super().__init__(config)
        self.uses_known = self.config.known_transitions

    def requires(self) -> None:
        require_cleanlab()

    def out_of_sample(self, ctx: DiscoveryContext) -> torch.Tensor:
        """(N, K) probabilities, each row from the fold model that did not train on it (cached in ``ctx``)."""
        cfg = self.config
        key = ("out-of-sample", cfg.folds, cfg.epochs, cfg.augment, repr(cfg.optim), cfg.seed)
        if key in ctx.cache:
            return ctx.cache[key]
        recipe = ctx.pretrain or TrainConfig(optim=OptimConfig(lr=0.05, batch_size=128))
        recipe = replace(recipe, epochs=cfg.epochs, augment=cfg.augment, optim=cfg.optim or recipe.optim)
        everything = torch.arange(len(ctx.train))
        probs = torch.zeros(len(ctx.train), ctx.train.num_classes)
        for i, held in enumerate(known_folds(everything, cfg.folds, cfg.seed)):
            torch.manual_seed(cfg.seed + i)
            model = ctx.runtime.prepare(fresh_copy(ctx.model))
            train_model(model, ctx.train.subset(everything[~torch.isin(everything, held)]),
                        replace(recipe, seed=cfg.seed + i), ctx.runtime,
                        desc=f"confident learning fold {i + 1}/{cfg.folds}")
            probs[held] = probabilities(model, ctx.batcher, held)
        ctx.cache[key] = probs
        return probs

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        rank = require_cleanlab()
        probs = self.out_of_sample(ctx)
        labels = ctx.train.labels
        quality = torch.as_tensor(rank.get_label_quality_scores(labels.numpy(), probs.numpy(),
                                                                method="self_confidence")).float()
        if not self.config.known_transitions:
            return -quality
        k = probs.shape[1]
        counts = torch.zeros(k, k)  # counts[y, c]: known ids with stored y, soft true class c
        counts.index_add_(0, labels[known_rows], probs[known_rows])
        counts += self.config.smoothing
        counts.fill_diagonal_(0.0)  # a corruption changes the label
        transitions = counts / counts.sum(0, keepdim=True)  # T(y | c)
        corrupted = (probs * transitions[labels]).sum(1)
        return torch.log(corrupted.clamp_min(1e-12)) - torch.log(quality.clamp_min(1e-12))

