"""``ensemble`` (the ``auto`` scorer): combine scorers by rank, keep what the held-out known ids prefer.

Each member's scores become percentiles among the unknown samples (the known
ids: their held-out ranks), which makes any scores comparable.  The candidates
are every member alone and the mean percentile of every group of members.
The choice needs no ground truth: the known ids are a uniform sample of the
corruption, so where they rank when held out is where the unfound corrupted
samples rank.  A member whose own scores show a clear gap (the stopping
rule's) wins first: that is a clean separation.  Otherwise the candidate
whose held-out known ids rank highest within L wins, scored as the mean of
max(0, 1 - rank / L), with L twice the median of the candidates' size
estimates: roughly the share of the corruption it finds in its top L.  (The
smallest mean rank, or the share within the smallest size estimate, are
noise when several candidates are near perfect; docs/discovery.md.)
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import ConfigError
from .base import DiscoveryContext, Scorer, ScorerConfig, Scores, held_out_rank
from .registry import get_scorer, make_scorer, register_scorer
from .stopping import GAP_RATIO, estimate_size, find_gap

DEFAULT_MEMBERS = ["similarity", "rem-transfer", "rem-similarity"]  # all in the default install


@dataclass
class EnsembleConfig(ScorerConfig):
    members: list[str] = field(default_factory=lambda: list(DEFAULT_MEMBERS))
    member_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per member config keys
    select: bool = True  # False: always the mean of all members

    def validate(self) -> None:
        if not self.members or len(set(self.members)) != len(self.members):
            raise ConfigError(f"members must be distinct scorer names, got {self.members}")
        for name in self.members:
            if name in ("ensemble", "auto"):
                raise ConfigError("an ensemble cannot contain itself")
            get_scorer(name)
        unknown = sorted(set(self.member_overrides) - set(self.members))
        if unknown:
            raise ConfigError(f"member_overrides for scorers that are not members: {', '.join(unknown)}")


def percentiles(scores: Scores, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool rows' share of pool rows above them, known rows' held-out share), both in [0, 1]."""
    size = max(1, int(pool.sum()))
    pool_rows = torch.nonzero(pool).flatten()
    return held_out_rank(scores.values, pool, pool_rows).double() / size, scores.held_out.double() / size


def rank_among(pool_pct: torch.Tensor, known_pct: torch.Tensor) -> torch.Tensor:
    """For each known row: unknown rows with a smaller (more suspicious) combined percentile, ties counted half."""
    ranked = torch.sort(pool_pct).values
    below = torch.searchsorted(ranked, known_pct.contiguous(), right=False)
    upto = torch.searchsorted(ranked, known_pct.contiguous(), right=True)
    return below.double() + 0.5 * (upto - below).double()


@register_scorer("ensemble")
class Ensemble(Scorer):
    summary = "rank mean of members (default similarity, rem-transfer, rem-similarity) or the one the known ids prefer"
    Config = EnsembleConfig

    def members(self) -> dict[str, Scorer]:
        cfg = self.config
        return {name: make_scorer(name, {"seed": cfg.seed, **cfg.member_overrides.get(name, {})})
                for name in cfg.members}

    def requires(self) -> None:
        self.members()

    def scores(self, ctx: DiscoveryContext) -> Scores:
        start = time.perf_counter()
        cfg = self.config
        members = {name: scorer.scores(ctx) for name, scorer in self.members().items()}
        parts = {name: percentiles(s, ctx.pool) for name, s in members.items()}
        groups = [g for size in range(2, len(parts) + 1) for g in itertools.combinations(parts, size)]
        candidates = dict(parts) if cfg.select or len(parts) == 1 else {}
        for group in groups if cfg.select else groups[-1:]:
            candidates["+".join(group)] = (torch.stack([parts[n][0] for n in group]).mean(0),
                                           torch.stack([parts[n][1] for n in group]).mean(0))
        held = {c: members[c].held_out if c in members else rank_among(pool_pct, known_pct)
                for c, (pool_pct, known_pct) in candidates.items()}
        pool_size = int(ctx.pool.sum())
        sizes = {c: estimate_size(h, pool_size) for c, h in held.items()}
        reach = max(2.0, 2.0 * float(torch.tensor(list(sizes.values())).median()))
        gaps = {c: find_gap(s.values[ctx.pool], s.held_out, sizes[c], GAP_RATIO) for c, s in members.items()}
        cuts = {c: float(cut) for c, cut in gaps.items() if cut is not None}
        found = {c: float((1.0 - h.double() / reach).clamp_min(0.0).mean()) for c, h in held.items()}
        chosen = min(candidates, key=lambda c: (c not in cuts, -found[c]))
        info = {"chosen": chosen, "members": {n: s.seconds for n, s in members.items()},
                "reach": reach, "gaps": cuts, "held_out_found": found}
        if chosen in members:  # its own scores: a clear gap in them is what the stopping rule looks for
            return Scores(members[chosen].values, members[chosen].held_out, time.perf_counter() - start, info)
        values = torch.zeros(len(ctx.train))
        values[ctx.pool] = -candidates[chosen][0].float()
        values[ctx.known_rows] = 1.0  # above every unknown row
        return Scores(values, held[chosen].double(), time.perf_counter() - start, info)

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("an ensemble scores through its members (Ensemble.scores)")
