"""The interface every scorer shares, and what a scorer may look at.

A scorer ranks every training sample by how likely it belongs to the same
corruption as the known ids.  It sees a :class:`DiscoveryContext`: the trained
model, the training set *as stored* (corrupted labels, triggers in place), the
known rows and the runtime; never true labels, never test data.

:meth:`Scorer.scores` also returns, for each known id, its rank among the
unknown samples when it was *held out* of the scoring (cross-fitting over
folds of the known ids).  The known ids are a uniform sample of the
corruption, so these held-out ranks show where the unfound corrupted samples
sit in the ranking: the stopping rule (:mod:`.stopping`) needs nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import torch
from torch import nn

from ..config import TrainConfig
from ..data.base import ImageDataset
from ..errors import UserError
from ..training import Batcher, Runtime


class MissingExtraError(UserError, ImportError):
    """A scorer needs an optional extra that is not installed."""


@dataclass
class ScorerConfig:
    """Fields every scorer has."""

    seed: int = 0  # folds of the known ids, and anything random in the scorer

    def validate(self) -> None:
        pass


@dataclass
class Scores:
    """A scorer's answer: higher ``values`` = more suspicious (known rows included, ranked first anyway)."""

    values: torch.Tensor  # (N,) float, aligned with the training rows
    held_out: torch.Tensor  # (n_known,) unknown rows scoring above each known row while it was held out (ties: half)
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


@dataclass
class DiscoveryContext:
    """Everything a scorer may use; nothing here reveals the true labels or the test set."""

    model: nn.Module  # the trained model; scorers never modify it
    train: ImageDataset  # D_tr as stored
    known_rows: torch.Tensor  # rows of the known corrupted ids
    runtime: Runtime
    pretrain: TrainConfig | None = None  # the model's training recipe, when known (confident learning uses it)

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.train, self.runtime)
        self.cache: dict = {}  # work scorers share within one discovery (e.g. REM runs), by key

    @cached_property
    def pool(self) -> torch.Tensor:
        """Boolean (N,): the rows that are not known (where the rest of the corruption hides)."""
        mask = torch.ones(len(self.train), dtype=torch.bool)
        mask[self.known_rows] = False
        return mask

    @cached_property
    def features(self) -> torch.Tensor:
        """Penultimate-layer features of every training row (computed once, shared by the scorers)."""
        from .features import penultimate

        return penultimate(self.model, self.batcher)


def held_out_rank(values: torch.Tensor, pool: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """For each of ``rows``: how many pool rows score above it, ties counted half (scores with many ties,
    such as a share of neighbours, would otherwise put every tied known row at the top)."""
    ranked = torch.sort(values[pool].double()).values
    query = values[rows].double().contiguous()
    above = len(ranked) - torch.searchsorted(ranked, query, right=True)
    ties = torch.searchsorted(ranked, query, right=True) - torch.searchsorted(ranked, query, right=False)
    return above.double() + 0.5 * ties.double()


def known_folds(rows: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """``rows`` in ``folds`` seeded, nearly equal parts (fewer parts when there are fewer rows)."""
    perm = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))]
    return [perm[i::folds] for i in range(min(folds, len(rows)))]


class Scorer:
    """Base class: subclasses set ``name``, ``summary``, ``Config`` and implement :meth:`score`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type[ScorerConfig]] = ScorerConfig
    #: False when the known ids do not enter :meth:`score`: their own scores are then held out already.
    uses_known: ClassVar[bool] = True
    #: Folds of the known ids for the held-out ranks (each fold costs one more :meth:`score`).
    folds: ClassVar[int] = 5

    def __init__(self, config: ScorerConfig | None = None):
        self.config = config or self.Config()

    def requires(self) -> None:
        """Raise :class:`MissingExtraError` when an optional package this scorer needs is not installed."""

    def score(self, ctx: DiscoveryContext, known_rows: torch.Tensor) -> torch.Tensor:
        """(N,) suspicion of every training row given ``known_rows``; higher = more likely corrupted."""
        raise NotImplementedError

    def scores(self, ctx: DiscoveryContext) -> Scores:
        """Final scores plus held-out ranks of the known rows (cross-fitted when the score uses them)."""
        start = time.perf_counter()
        known = ctx.known_rows
        if not self.uses_known or len(known) < 2:
            values = self.score(ctx, known).float()
            held = held_out_rank(values, ctx.pool, known)
            return Scores(values, held, time.perf_counter() - start)
        held = torch.zeros(len(known), dtype=torch.float64)
        position = {int(r): i for i, r in enumerate(known)}
        for fold in known_folds(known, self.folds, self.config.seed):
            rest = known[~torch.isin(known, fold)]
            ranks = held_out_rank(self.score(ctx, rest).float(), ctx.pool, fold)
            for row, rank in zip(fold.tolist(), ranks.tolist()):
                held[position[row]] = rank
        return Scores(self.score(ctx, known).float(), held, time.perf_counter() - start)

