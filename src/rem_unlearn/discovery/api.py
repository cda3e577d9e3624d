"""``discover(model, train_set, known_ids)``: from a few known corrupted ids to a ranked list and a forget set."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, RuntimeConfig, TrainConfig, to_dict
from ..data.base import ImageDataset
from ..files import atomic_write_text
from ..training import Runtime
from .base import DiscoveryContext
from .registry import make_scorer, resolve
from .stopping import choose_k


@dataclass
class DiscoveryResult:
    """Every training id, most suspicious first (the known ids first), and how many to take."""

    ids: torch.Tensor  # (N,) every training id, ranked
    scores: torch.Tensor  # (N,) aligned with ``ids``; the known ids carry +inf
    k: int  # the chosen set is ids[:k] (the stopping rule's, or the budget)
    known_ids: torch.Tensor
    scorer: str
    config: dict[str, Any]
    estimated_size: float  # the stopping rule's estimate of the corrupted samples among the unknown ids
    rule: str  # how k was chosen: "gap", "f1" or "budget"
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def selected(self) -> torch.Tensor:
        """The chosen ids (the known ones included), sorted: a forget set for ``unlearn``."""
        return torch.sort(self.ids[:self.k]).values

    def precision_recall(self, corrupted_ids, k: int | None = None) -> tuple[float, float]:
        """Precision and recall in percent of the top ``k`` (default: the chosen set); for measurements only."""
        k = self.k if k is None else k
        hits = int(torch.isin(self.ids[:k], torch.as_tensor(corrupted_ids)).sum())
        return 100.0 * hits / max(1, k), 100.0 * hits / max(1, len(corrupted_ids))

    def write_ids(self, path: str | Path) -> None:
        """The chosen ids, one per line (what ``unlearn --forget-ids`` reads), written atomically."""
        head = (f"# rem-unlearn discover: scorer {self.scorer}, {self.k} ids ({len(self.known_ids)} known), "
                f"rule {self.rule}\n")
        atomic_write_text(path, head + "".join(f"{i}\n" for i in self.selected.tolist()))

    def write_ranking(self, path: str | Path) -> None:
        """Every id with its score and rank (1 = most suspicious; known ids first, score inf), as CSV."""
        rows = (f"{i},{s:.6g},{r}\n" for r, (i, s) in enumerate(zip(self.ids.tolist(), self.scores.tolist()), 1))
        atomic_write_text(path, "id,score,rank\n" + "".join(rows))


def discover(model: nn.Module, train_set: ImageDataset, known_ids, scorer: str = "auto", budget: int | None = None,
             *, runtime: Runtime | RuntimeConfig | dict | None = None, pretrain: TrainConfig | None = None,
             **overrides) -> DiscoveryResult:
    """Rank every training id by how likely it belongs to the corruption of ``known_ids``.

    Uses only what is known at unlearning time: ``model``, ``train_set`` as
    stored and ``known_ids``.  ``budget`` fixes the number of ids to return
    (known ones included); by default the stopping rule chooses it.
    ``overrides`` are fields of the scorer's config (``seed=1``, ``epochs=2``);
    an unknown name is an error listing the valid ones.  The model is never
    modified.  Unknown, duplicated or empty ids get the errors of ``unlearn``.
    """
    make_scorer(scorer, overrides)  # a bad name, key or missing extra: before any work
    ctx = discovery_context(model, train_set, known_ids, runtime=runtime, pretrain=pretrain)
    return rank(ctx, scorer, budget, **overrides)


def discovery_context(model: nn.Module, train_set: ImageDataset, known_ids, *,
                      runtime: Runtime | RuntimeConfig | dict | None = None,
                      pretrain: TrainConfig | None = None) -> DiscoveryContext:
    """The validated inputs of a discovery; several scorers can :func:`rank` on one (features are shared)."""
    from ..api import forget_rows, working_copy

    known_rows = forget_rows(train_set, known_ids)
    if len(known_rows) == len(train_set):
        raise ConfigError("every training id is known; there is nothing left to discover")
    model, train_set, runtime = working_copy(model, train_set, runtime)  # the caller's model stays as it is
    return DiscoveryContext(model.eval(), train_set, known_rows, runtime, pretrain=pretrain)


def rank(ctx: DiscoveryContext, scorer: str = "auto", budget: int | None = None, **overrides) -> DiscoveryResult:
    """Run one scorer on ``ctx``, rank every id (the known ones first) and choose how many to take."""
    start = time.perf_counter()
    method = make_scorer(scorer, overrides)
    n_known, n = len(ctx.known_rows), len(ctx.train)
    if budget is not None and not (n_known <= int(budget) <= n):
        raise ConfigError(f"budget must be between the number of known ids ({n_known}) and the training "
                          f"set's size ({n}), got {budget}")
    scores = method.scores(ctx)
    values = scores.values.double().clone()
    values[ctx.known_rows] = float("inf")
    order = torch.argsort(values, descending=True, stable=True)
    stop = choose_k(scores.values, ctx.pool, scores.held_out, budget)
    return DiscoveryResult(ctx.train.ids[order], values[order], stop.k, ctx.train.ids[ctx.known_rows].clone(),
                           resolve(scorer), to_dict(method.config), stop.estimated_size, stop.rule,
                           {"scoring": scores.seconds, "total": time.perf_counter() - start}, scores.info)
