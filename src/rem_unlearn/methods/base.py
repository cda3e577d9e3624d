"""The common interface of every unlearning method, and the parts they share.

A method is a small class with a typed ``Config`` dataclass and a ``run``
that receives an :class:`UnlearnContext` (a private copy of the trained
model, D_tr, the forget and retain rows, a step budget) and returns the
unlearned model.  Optimiser, schedule, mixed precision and the NaN guard come
from :class:`rem_unlearn.training.Trainer`; model selection from
:class:`ProxySelector`, which only looks at data known at unlearning time.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Generic, Iterator, TypeVar, cast

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError, OptimConfig, TrainConfig
from ..data.base import ImageDataset
from ..models.gates import gates, partition_state
from ..training import Batcher, Runtime, Trainer, accuracy


def unlearn_optim() -> OptimConfig:
    """The paper's unlearning optimiser: SGD, lr 0.005, constant, wd 5e-4."""
    return OptimConfig(optimizer="sgd", lr=0.005, momentum=0.9, weight_decay=5e-4, schedule="constant",
                       batch_size=128)


@dataclass(frozen=True)
class Times:
    """A search-space value: this multiple of the setting the method resolves to (e.g. the recipe's lr)."""

    factor: float

    def __repr__(self) -> str:
        return f"x{self.factor:g}"


#: The learning rates every gradient method's search tries: half, the published one, double.
LR_RANGE = (Times(0.5), Times(1.0), Times(2.0))


@dataclass
class UnlearnConfig:
    """Fields every method has. ``epochs`` sets the step budget: epochs x steps per pass over D_tr."""

    optim: OptimConfig = field(default_factory=unlearn_optim)
    epochs: float = 10.0
    budget_steps: int | None = None  # overrides ``epochs`` when set
    gamma: float = 0.2  # forget-accuracy threshold (stopping and the proxy's floor)
    augment: bool = True
    crop_padding: int = 2
    proxy_retain_samples: int = 2000  # D_r rows used for the selection proxy (0 = all)
    # Random views of each D_f image in the proxy's removing term, which then reads the higher of the
    # accuracy as stored and on those views (0: as stored only).  Views show a backdoor that comes back
    # while the stored D_f rows, trained on directly, stay forgotten (research/notes/results.md, "Cost").
    proxy_forget_views: int = 0
    select_best: bool = True
    seed: int = 0
    # What `rem-unlearn tune` may try (dotted field -> values), from the method's paper's ranges; the budget
    # (epochs) is the grid's, equal for every method, and is not searched.
    search_space: ClassVar[dict[str, tuple]] = {}

    def validate(self) -> None:
        self.optim.validate()
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma must be in [0, 1), got {self.gamma}")
        if self.epochs <= 0 and not self.budget_steps:
            raise ConfigError("epochs must be positive")
        if self.proxy_forget_views < 0:
            raise ConfigError(f"proxy_forget_views must be >= 0, got {self.proxy_forget_views}")


@dataclass
class UnlearnContext:
    """Everything a method may use. Nothing here reveals the true labels or the test set."""

    model: nn.Module  # a private copy: methods may modify it in place
    train: ImageDataset  # D_tr as stored: corrupted labels, triggers in place
    forget_rows: torch.Tensor
    retain_rows: torch.Tensor
    runtime: Runtime
    config: UnlearnConfig
    pretrain: TrainConfig | None = None  # the recipe of the trained model (Retrain uses it)
    oracle_ids: torch.Tensor | None = None  # all corrupted ids; only REM-IDEAL may read them
    on_epoch: Callable[[nn.Module, str], None] | None = None  # observer (diagnostics), never used for selection
    history: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.config
        self.batcher = Batcher(self.train, self.runtime, augment=cfg.augment, crop_padding=cfg.crop_padding,
                               seed=cfg.seed)
        self.eval_batcher = Batcher(self.train, self.runtime)
        self.all_rows = torch.arange(len(self.train))
        self.forget_ids = self.train.ids[self.forget_rows]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.config.optim.batch_size)

    @property
    def budget(self) -> int:
        cfg = self.config
        return cfg.budget_steps if cfg.budget_steps else max(1, int(round(cfg.epochs * self.steps_per_epoch)))

    def trainer(self, model: nn.Module | None = None, params=None, what: str = "unlearning",
                optim: OptimConfig | None = None, total_steps: int | None = None,
                grad_masks: dict[nn.Parameter, torch.Tensor] | None = None) -> Trainer:
        return Trainer(model or self.model, optim or self.config.optim, total_steps or self.budget, self.runtime,
                       params=params, what=what, grad_masks=grad_masks)

    def batches(self, rows: torch.Tensor, batch_size: int | None = None, *,
                augment: bool | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """Endless shuffled batches over ``rows``, epoch after epoch; ``augment`` overrides the config's augmentation."""
        while True:
            yield from self.batcher.epoch(rows, batch_size or self.config.optim.batch_size, augment=augment)

    def forget_accuracy(self, model: nn.Module) -> float:
        return accuracy(model, self.eval_batcher, self.forget_rows) / 100.0

    def log(self, **row) -> None:
        self.history.append(row)

    def observe(self, model: nn.Module, label: str) -> None:
        if self.on_epoch is not None:
            self.on_epoch(model, label)

    def fresh_model(self) -> nn.Module:
        """A re-initialised model of the same architecture (for Retrain and the random Bad Teacher)."""
        arch = getattr(self.model, "arch", None)
        if arch is None:
            raise TypeError(f"cannot re-initialise {type(self.model).__name__}: it has no `arch` record")
        fresh = type(self.model)(**arch)
        if gates(fresh):
            src, dst = partition_state(self.model), partition_state(fresh)
            dst.p_mem, dst.seed = src.p_mem, src.seed
        return self.runtime.prepare(fresh)


def retain_sample(retain_rows: torch.Tensor, config: UnlearnConfig) -> torch.Tensor:
    """The fixed sample of D_r that measures utility on known data (the proxy's keeping, the utility guard)."""
    n = config.proxy_retain_samples
    if n and len(retain_rows) > n:
        g = torch.Generator().manual_seed(config.seed + 7919)
        return retain_rows[torch.randperm(len(retain_rows), generator=g)[:n]]
    return retain_rows


class ProxySelector:
    """Keeps the best model by keeping x (1 - max(removing, gamma)), on known data only.

    keeping = accuracy on (a fixed sample of) D_r, removing = accuracy on D_f
    with its stored labels, both in drop mode on non-augmented images (with
    ``proxy_forget_views``, removing is the higher of that and the accuracy on
    the same random views of D_f every time).  The original model's proxy is
    the bar; the best is a real copy, so the original comes back when nothing
    beats it (the official pointer aliases the live model, docs/paper.md §9.7).
    """

    def __init__(self, ctx: UnlearnContext, model: nn.Module):
        self.ctx = ctx
        self.keep_rows = retain_sample(ctx.retain_rows, ctx.config)
        views = ctx.config.proxy_forget_views
        self.view_rows = ctx.forget_rows.repeat(views) if views and len(ctx.forget_rows) else None
        self.view_batcher = (Batcher(ctx.train, ctx.runtime, augment=True, crop_padding=ctx.config.crop_padding)
                             if self.view_rows is not None else None)
        self.last_forget: dict[str, float] = {}  # D_f's accuracies at the last evaluation (stopping rules read them)
        self.best_model = copy.deepcopy(model)
        self.best_proxy = self.proxy(model, label="start")
        self.best_label = "start"

    def proxy(self, model: nn.Module, label: str = "") -> float:
        keeping = accuracy(model, self.ctx.eval_batcher, self.keep_rows) / 100.0 if len(self.keep_rows) else 1.0
        forget = self.last_forget = self.forget_accuracies(model)
        removing = self.last_removing
        value = keeping * (1.0 - max(removing, self.ctx.config.gamma))
        parts = {f"forget_{k}": v for k, v in forget.items()} if len(forget) > 1 else {}
        self.ctx.log(event="proxy", at=label, keeping=keeping, removing=removing, proxy=value, **parts)
        return value

    @property
    def last_removing(self) -> float:
        """The proxy's removing term at the last evaluation (GA/NPO stop on it)."""
        return max(self.last_forget.values(), default=float("nan"))

    def forget_accuracies(self, model: nn.Module) -> dict[str, float]:
        """D_f's accuracy on its stored labels: as stored, and on the fixed views (``proxy_forget_views``)."""
        out = {"stored": self.ctx.forget_accuracy(model)}
        if self.view_rows is not None:
            self.view_batcher.generator.manual_seed(self.ctx.config.seed + 104729)  # the same views every time
            out["views"] = accuracy(model, self.view_batcher, self.view_rows, augment=True) / 100.0
        return out

    def consider(self, model: nn.Module, label: str) -> float:
        value = self.proxy(model, label)
        if value > self.best_proxy or not self.ctx.config.select_best:
            self.best_proxy, self.best_model, self.best_label = value, copy.deepcopy(model), label
        return value

    def result(self, model: nn.Module) -> nn.Module:
        return self.best_model if self.ctx.config.select_best else model


C = TypeVar("C", bound=UnlearnConfig)


class Method(Generic[C]):
    """Base class: subclasses set ``name``, ``Config`` and implement :meth:`run`.

    ``Method[MyConfig]`` types ``self.config`` as ``MyConfig``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[UnlearnConfig]] = UnlearnConfig
    summary: ClassVar[str] = ""
    gradient_based: ClassVar[bool] = True

    def __init__(self, config: C | None = None):
        self.config: C = config if config is not None else cast(C, self.Config())

    def run(self, ctx: UnlearnContext) -> nn.Module:
        raise NotImplementedError


# ----------------------------------------------------------------------------- shared loss pieces


def npo_removal(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample NPO removal loss -(2/beta) log sigmoid(beta (CE - CE_ref)): raises CE above the reference."""
    return -(2.0 / beta) * F.logsigmoid(beta * (ce - ce_ref))


def dpo_fit(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample redirect loss +(2/beta) log sigmoid(beta (CE - CE_ref)): lowers CE relative to the reference."""
    return (2.0 / beta) * F.logsigmoid(beta * (ce - ce_ref))


def capped_dpo_fit(ce: torch.Tensor, ce_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """:func:`dpo_fit` with its gradient weight 2 sigma(beta (CE_ref - CE)) capped at 1.

    The uncapped weight rises towards 2 on samples the model already fits better than the reference
    and falls towards 0 on those it fits worse, so the fit feeds on its own drift.  Capped, a sample the
    model fits better is fitted as by plain cross-entropy; the fading weight that keeps forgotten samples
    forgotten is unchanged (research/notes/vit.md, "The fit weight").
    """
    d = ce - ce_ref
    return torch.where(d > 0, dpo_fit(ce, ce_ref, beta), d - (2.0 / beta) * math.log(2.0))


def per_sample_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), y, reduction="none")
