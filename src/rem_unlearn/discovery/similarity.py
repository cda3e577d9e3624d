"""``similarity``: closer to the known samples of its stored label than to the rest of that label.

Per stored label c of the known ids, a sample labelled c scores
``cos-features · (mean of the known ones labelled c − mean of the others labelled c)``:
a linear contrast between "looks like the known corrupted samples" and "looks like
its label's clean population".  A class-conditional centroid is steadier than one
nearest neighbour (the naive probe), and the contrast with the label's own
population removes what every sample of that label shares.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from .base import DiscoveryContext, Scorer
from .registry import register_scorer


def per_known_class(ctx: DiscoveryContext, known_rows: torch.Tensor,
                    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``score(rows of label c, known rows of label c)`` for every stored label c of the known rows.

    Samples of labels no known id carries rank below all others (they cannot be
    "like the known ones" with the same stored label).
    """
    labels = ctx.train.labels
    out = torch.full((len(labels),), float("nan"))
    for c in torch.unique(labels[known_rows]).tolist():
        rows = torch.nonzero(labels == c).flatten()
        out[rows] = score(rows, known_rows[labels[known_rows] == c]).float()
    floor = out[~out.isnan()].min() - 1.0 if bool((~out.isnan()).any()) else torch.tensor(0.0)
    return torch.nan_to_num(out, nan=float(floor))


def contrast_score(ctx: DiscoveryContext, features: torch.Tensor, known_rows: torch.Tensor) -> torch.Tensor:
    """Per stored label: cosine features · (known samples' mean − the label's other samples' mean)."""
    f = F.normalize(features, dim=1)
    is_known = torch.zeros(len(f), dtype=torch.bool)
    is_known[known_rows] = True

    def contrast(rows: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        others = rows[~is_known[rows]]
        direction = f[known].mean(0) - (f[others].mean(0) if len(others) else 0.0)
        return f[rows] @ direction

    return per_known_class(ctx, known_rows, contrast)


@register_scorer("similarity")
class Similarity(Scorer):
    summary = "penultimate features: known-sample centroid minus the label's own centroid, per stored label"

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        return contrast_score(ctx, ctx.features, known_rows)
