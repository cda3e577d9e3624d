"""``advise(model, train_set, known_ids)``: where a task lies in the space, and what the benchmark favours there.

The right method depends on two things a user does not know (docs/advise.md):

* **the discovery rate**, the share of the corrupted samples that is known.  ``discover`` estimates how many
  corrupted samples hide among the unknown ids (its stopping rule reads where held-out known ids rank);
  the rate is known / (known + that estimate).
* **the statistical regularity**, how far the corruption generalises.  A rule survives small changes of the
  input; a memorised exception does not.  The regularity is the share of randomly shifted views of the known
  images (8 per image, up to 4 pixels) on which the model still predicts their stored label.  A backdoor
  keeps its target on the views (near 1), memorised random labels fall back to the true class (near 0), a
  swap of two similar classes lies between.  (How far removing half of the known ids carries over to the
  other half was the first candidate; on the dev tasks it separated the kinds less well, docs/advise.md.)

The task is placed at the nearest discovery rate and regularity of the shipped table
(``bench/advice.json``, made by ``scripts/advice_table.py`` from committed benchmark records; the
regularity of each corruption kind measured on dev tasks), and the method with the best mean score there is
named, with the numbers behind it.  Nothing reads the test split or true labels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import torch
from torch import nn

from .config import RuntimeConfig, TrainConfig
from .data.base import ImageDataset
from .training import Batcher, Runtime, accuracy

#: Which regularity each benchmark corruption stands for.
LEVELS = {"random": "low", "interclass": "medium", "poison": "high"}


def advice_table() -> dict[str, Any]:
    """The shipped table: per corruption kind and discovery rate, every method's mean score (and its provenance)."""
    return json.loads(resources.files("rem_unlearn").joinpath("bench/advice.json").read_text())


@dataclass
class Regularity:
    """The probes' measurements (accuracies in %, on stored labels)."""

    value: float  # views / as stored: how much of the known images' fit survives small shifts
    views: float  # accuracy on the views
    stored: float  # accuracy on the known images as stored


def view_agreement(model: nn.Module, train: ImageDataset, rows: torch.Tensor, runtime: Runtime, *, seed: int = 0,
                   views: int = 8, shift: int = 4) -> tuple[float, float]:
    """Accuracy (%) on ``rows``' stored labels: on ``views`` random shifted views of each (and flips where the
    data set flips), and as stored."""
    shifted = Batcher(train, runtime, augment=True, crop_padding=shift, seed=seed)
    return (accuracy(model, shifted, rows.repeat(views), augment=True),
            accuracy(model, Batcher(train, runtime), rows))


def regularity_probe(model: nn.Module, train: ImageDataset, known_rows: torch.Tensor, runtime: Runtime, *,
                     seed: int = 0) -> Regularity:
    """The known rows' regularity (see the module docstring); the model is not modified."""
    views, stored = view_agreement(model, train, known_rows, runtime, seed=seed)
    return Regularity(min(1.0, views / stored) if stored > 0 else 0.0, views, stored)


@dataclass
class Advice:
    """Where the task lies, and the ranking of the nearest benchmark cell."""

    known: int
    estimated_unfound: float
    discovery_rate: float
    regularity: Regularity
    corruption: str  # the benchmark corruption whose regularity is nearest
    nearest_rate: float  # the table's nearest discovery rate
    ranking: list[dict[str, Any]]  # [{"method", "score", "sem", "n"}], best first
    scorer: str
    seconds: float
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def recommended(self) -> str:
        return self.ranking[0]["method"]

    @property
    def level(self) -> str:
        return LEVELS[self.corruption]

    def lines(self, top: int = 5) -> list[str]:
        r = self.regularity
        out = [
            f"discovery rate: about {self.discovery_rate:.2f} ({self.known} known ids; `discover --scorer "
            f"{self.scorer}` estimates {self.estimated_unfound:.0f} more corrupted samples among the unknown ids)",
            f"regularity: {r.value:.2f} -> {self.level}, like the benchmark's {self.corruption} corruption "
            f"(shifted views of the known images keep their stored label {r.views:.0f} % of the time, the images "
            f"as stored {r.stored:.0f} %)",
            f"nearest benchmark cell: {self.corruption} at discovery {self.nearest_rate:g} "
            f"({self.source.get('experiment', 'the embedded benchmark')}); mean score over "
            f"{self.ranking[0]['n']} seed(s):",
        ]
        out += [f"  {i}. {m['method']:<15} {m['score']:6.1f} ± {m['sem']:.1f}" for i, m in
                enumerate(self.ranking[:top], 1)]
        out.append(f"recommended: {self.recommended}")
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(recommended=self.recommended, level=self.level)
        return data


def place(table: dict[str, Any], regularity: float, discovery_rate: float) -> tuple[str, float]:
    """The table's corruption kind with the nearest regularity, and its nearest discovery rate."""
    refs = table["regularity"]
    kind = min(refs, key=lambda k: abs(refs[k] - regularity)) if regularity == regularity else "random"
    rates = sorted(float(r) for r in table["cells"][kind])
    return kind, min(rates, key=lambda r: abs(r - discovery_rate))


def ranking(table: dict[str, Any], corruption: str, rate: float) -> list[dict[str, Any]]:
    cell = table["cells"][corruption][f"{rate:g}"]
    rows = [{"method": m, "score": v["score"], "sem": v["sem"], "n": v["n"]} for m, v in cell.items()]
    return sorted(rows, key=lambda row: -row["score"])


def advise(model: nn.Module, train_set: ImageDataset, known_ids, *, scorer: str = "auto",
           runtime: Runtime | RuntimeConfig | dict | None = None, pretrain: TrainConfig | None = None,
           seed: int = 0, table: dict[str, Any] | None = None) -> Advice:
    """Estimate the task's discovery rate and regularity from what a practitioner has, and rank the methods
    the benchmark records favour there.  The model is never modified."""
    from .discovery import discovery_context, rank

    start = time.perf_counter()
    table = table or advice_table()
    ctx = discovery_context(model, train_set, known_ids, runtime=runtime, pretrain=pretrain)
    found = rank(ctx, scorer, seed=seed)
    known = len(ctx.known_rows)
    rate = known / (known + max(0.0, found.estimated_size))
    regularity = regularity_probe(ctx.model, ctx.train, ctx.known_rows, ctx.runtime, seed=seed)
    corruption, nearest = place(table, regularity.value, rate)
    return Advice(known, found.estimated_size, rate, regularity, corruption, nearest,
                  ranking(table, corruption, nearest), found.scorer, time.perf_counter() - start,
                  table.get("source", {}))
