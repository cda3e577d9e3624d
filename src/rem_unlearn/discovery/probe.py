"""``nearest``: the naive probe, the bar every other scorer has to beat.

The largest cosine similarity, in the trained model's penultimate features, to
a known sample with the same stored label.  It finds a backdoor (the trigger
makes poisoned samples look alike) but little else: a memorising model puts a
mislabelled sample next to the samples of its stored label.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .base import DiscoveryContext, Scorer
from .registry import register_scorer
from .similarity import per_known_class


@register_scorer("nearest")
class Nearest(Scorer):
    summary = "max cosine similarity to a known sample with the same stored label (naive probe)"

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        f = F.normalize(ctx.features, dim=1)
        return per_known_class(ctx, known_rows, lambda rows, known: (f[rows] @ f[known].T).amax(1))
