"""``knn-label``: the classic label-noise detector, without the known ids.

The share of a sample's k nearest neighbours (cosine, standardised penultimate
features) whose stored label differs from its own.  Even a model that
memorised its wrong labels keeps some of a mislabelled sample's true-class
neighbourhood in these features; a backdoor, whose samples look alike, it
cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..config import ConfigError
from .base import DiscoveryContext, Scorer, ScorerConfig
from .registry import register_scorer


@dataclass
class KnnConfig(ScorerConfig):
    neighbours: int = 20
    chunk: int = 1024  # rows per similarity block (memory: chunk x N floats)

    def validate(self) -> None:
        if self.neighbours < 1 or self.chunk < 1:
            raise ConfigError("neighbours and chunk must be at least 1")


def standardised(features: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores, constant dimensions (e.g. dropped units) removed, rows L2-normalised."""
    std = features.std(0)
    keep = std > 1e-8
    f = (features[:, keep] - features[:, keep].mean(0)) / std[keep]
    return F.normalize(f, dim=1)


@register_scorer("knn-label")
class KnnLabel(Scorer):
    summary = "share of the k nearest neighbours (penultimate features) with another stored label"
    Config = KnnConfig
    uses_known = False

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        f = standardised(ctx.features)
        labels = ctx.train.labels
        k = min(self.config.neighbours, len(f) - 1)
        out = torch.zeros(len(f))
        for start in range(0, len(f), self.config.chunk):
            rows = torch.arange(start, min(start + self.config.chunk, len(f)))
            sims = f[rows] @ f.T
            sims[torch.arange(len(rows)), rows] = -float("inf")  # not its own neighbour
            nearest = sims.topk(k, dim=1).indices
            out[rows] = (labels[nearest] != labels[rows, None]).float().mean(1)
        return out
