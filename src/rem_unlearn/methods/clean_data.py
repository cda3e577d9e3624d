"""The clean data a backdoor defence is given here: a seeded sample of D_r.

Purification defences (ANP, i-BAU) assume a small clean set and no known poisoned sample.  The unlearning
setting has no certified clean set: D_r is what is left after removing the known ids, so below full discovery
it still holds the undiscovered corrupted samples, and the defence's "clean" sample holds them in proportion.
"""

from __future__ import annotations

import torch

from ..config import ConfigError
from .base import UnlearnContext


def clean_sample(ctx: UnlearnContext, size: int) -> torch.Tensor:
    """``size`` rows of D_r (all of D_r when it is smaller), chosen by the method's seed."""
    if size < 1:
        raise ConfigError(f"clean_samples must be >= 1, got {size}")
    rows = ctx.retain_rows
    if len(rows) <= size:
        return rows
    g = torch.Generator().manual_seed(ctx.config.seed + 15485863)
    return rows[torch.randperm(len(rows), generator=g)[:size]]
