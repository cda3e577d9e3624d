"""``spectral``: spectral signatures (Tran et al. 2018) in the known ids' stored label(s).

Within each stored label the known ids carry (a backdoor's target class), the
samples' centred penultimate features are projected on their top singular
vector; a poison that shifts its samples in one direction stands out as a
large squared projection.  Scores are divided by the label's median so that
labels compare.  It uses the known ids only to choose the labels.
"""

from __future__ import annotations

import torch

from .base import DiscoveryContext, Scorer
from .registry import register_scorer
from .similarity import per_known_class


@register_scorer("spectral")
class Spectral(Scorer):
    summary = "squared projection on the top singular vector within the known ids' stored label(s)"

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        f = ctx.features

        def signature(rows: torch.Tensor, _known: torch.Tensor) -> torch.Tensor:
            x = f[rows] - f[rows].mean(0)
            if len(rows) < 2:
                return torch.zeros(len(rows))
            top = torch.linalg.svd(x, full_matrices=False).Vh[0]
            s = (x @ top) ** 2
            return s / s.median().clamp_min(1e-12)

        return per_known_class(ctx, known_rows, signature)
