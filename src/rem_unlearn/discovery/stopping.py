"""How many ids to add, without ground truth: from where the held-out known ids rank.

The known ids are a uniform sample of the corruption.  Held out of the scoring,
the j-th best of the n known ids has, in expectation, a share j/(n+1) of the
unfound corrupted samples above it, plus the clean samples the scorer ranks
there.  So ``held-out rank × (n+1)/j`` over-estimates the number M of unfound
corrupted samples by the clean ones only, and the smallest such estimate
(over j from n/4 on; fewer known ids above make it too noisy) is the least
contaminated.

A clean separation shows as a gap: when the sorted scores have, within
[M/2, 2M], a drop at least ``gap_ratio`` times the median drop there, with at
least 90 % of the held-out known ids above it and at most half of the scored
samples (a corruption is a minority, not an outlier tail), the cut goes
exactly there.  Without a gap, the cut maximises the estimated F1: the top m
unknown samples hold about M·F(m) corrupted ones, F(m) being the share of
held-out known ids within them, so precision ≈ (n + M·F(m)) / (n + m) and
recall ≈ (n + M·F(m)) / (n + M).  Where the scorer mixes clean samples in,
this stops where the known ids thin out instead of at the (over-estimated)
size, which keeps the forget set precise.
The known ids are always in the result, so it is never empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GAP_RATIO = 20.0  # a gap is a drop this many times the median drop around it


@dataclass
class Stop:
    k: int  # ids in the chosen set, the known ones included
    estimated_size: float  # estimated corrupted samples among the unknown ones
    gap: bool  # the cut sits at a clear gap in the scores
    rule: str  # "gap", "f1" or "budget"


def estimate_size(held_out: torch.Tensor, pool_size: int) -> float:
    """Estimated number of corrupted samples among the ``pool_size`` unknown ones (see the module doc)."""
    n = len(held_out)
    if n == 0:
        return 0.0
    ranks = torch.sort(held_out.double()).values
    j = torch.arange(1, n + 1, dtype=torch.float64)
    estimates = ranks * (n + 1) / j
    first = max(1, math.ceil(n / 4)) - 1
    return float(min(estimates[first:].min(), pool_size))


def find_gap(pool_scores: torch.Tensor, held_out: torch.Tensor, size: float, ratio: float) -> int | None:
    """The cut (number of unknown ids) at a clear gap near ``size``, or None."""
    s = torch.sort(pool_scores.double(), descending=True).values
    lo, hi = max(1, int(size / 2)), min(len(s) - 1, math.ceil(2 * size))
    if hi - lo < 2:
        return None
    drops = s[lo - 1:hi] - s[lo:hi + 1]  # drops[i]: between positions lo+i and lo+i+1 (1-based)
    drops[s[lo:hi + 1] <= s[-1]] = 0.0  # a drop onto the lowest score is a floor (e.g. unscored labels), no gap
    best = int(torch.argmax(drops))
    cut = lo + best
    typical = float(drops.median())
    above = float((held_out < cut).double().mean()) if len(held_out) else 1.0
    minority = cut <= int((s > s[-1]).sum()) / 2  # a corruption is the smaller side of a gap, not an outlier tail
    if float(drops[best]) > ratio * max(typical, 1e-12) and above >= 0.9 and minority:
        return cut
    return None


def choose_k(values: torch.Tensor, pool: torch.Tensor, held_out: torch.Tensor, budget: int | None = None,
             gap_ratio: float = GAP_RATIO) -> Stop:
    """The size of the chosen set: ``budget`` when given, else the known ids plus the unknown ones down to
    a clear gap, or to the estimated F1 optimum."""
    n_known = int((~pool).sum())
    size = estimate_size(held_out, int(pool.sum()))
    if budget is not None:
        return Stop(int(budget), size, False, "budget")
    cut = find_gap(values[pool], held_out, size, gap_ratio) if size >= 1 else None
    if cut is not None:
        return Stop(n_known + cut, size, True, "gap")
    return Stop(n_known + best_f1_cut(held_out, size, int(pool.sum())), size, False, "f1")


def best_f1_cut(held_out: torch.Tensor, size: float, pool_size: int) -> int:
    """The number m of unknown ids that maximises the estimated F1 (see the module doc); 0 when none helps."""
    n = len(held_out)
    if n == 0 or size <= 0 or pool_size == 0:
        return 0
    # F1 only rises where a held-out known id enters the top m: m = its rank, rounded up, + 1.
    cuts = torch.unique(torch.cat([torch.zeros(1), (torch.floor(held_out.double()) + 1).clamp(max=pool_size)]))
    found = (held_out.double().unsqueeze(0) < cuts.unsqueeze(1)).double().mean(1)
    f1 = 2 * (n + size * found) / (2 * n + cuts + size)
    return int(cuts[int(torch.argmax(f1))])
