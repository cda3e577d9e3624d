"""The practitioner's entry point: ``unlearn(model, train_set, forget_ids, method="rem")``."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .config import RuntimeConfig, TrainConfig, from_dict, to_dict, validate_tree
from .data.base import ImageDataset
from .methods.base import UnlearnContext
from .models.expand import check_classifier
from .methods.registry import get_method
from .training import Runtime


class ForgetIdError(ValueError):
    """Forget ids that cannot be used; raised before any work is done."""


@dataclass
class UnlearnResult:
    model: nn.Module  # use in drop mode (the default), or call :meth:`discard`
    method: str
    config: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    def discard(self) -> nn.Module:
        """The model with the redirection capacity physically removed (plain module)."""
        from .models import discard

        return discard(self.model)


def forget_rows(train: ImageDataset, forget_ids) -> torch.Tensor:
    """Rows of D_f in ``train``; empty, duplicated, negative or unknown ids are clear errors."""
    ids = torch.as_tensor(forget_ids)
    if ids.numel() == 0:
        raise ForgetIdError("the forget set is empty: give at least one sample id")
    if ids.is_floating_point():
        if not bool((ids == ids.round()).all()):
            raise ForgetIdError("forget ids must be integers")
    ids = ids.long().flatten()
    uniq, counts = torch.unique(ids, return_counts=True)
    if bool((counts > 1).any()):
        raise ForgetIdError(f"duplicated forget ids: {uniq[counts > 1][:5].tolist()}")
    known = torch.isin(ids, train.ids)
    if not bool(known.all()):
        bad = ids[~known][:5].tolist()
        raise ForgetIdError(f"forget ids not in the training set ({len(train)} samples, ids "
                            f"{int(train.ids.min())}..{int(train.ids.max())}): {bad}")
    return train.rows_of(ids)


def unlearn(model: nn.Module, train_set: ImageDataset, forget_ids, method: str = "rem", *,
            runtime: Runtime | RuntimeConfig | dict | None = None, pretrain: TrainConfig | None = None,
            oracle_ids=None, patch_size: int = 3, on_epoch=None, **overrides) -> UnlearnResult:
    """Unlearn ``forget_ids`` from ``model``; the input model is never modified.

    ``overrides`` are fields of the method's config (e.g. ``epochs=5``,
    ``optim={"lr": 0.01}``); an unknown name is an error listing the valid ones.
    """
    cls = get_method(method)
    config = from_dict(cls.Config, overrides, where=method)
    validate_tree(config)
    rows = forget_rows(train_set, forget_ids)
    if len(rows) == len(train_set):
        raise ForgetIdError("the forget set covers the whole training set; nothing would be retained")
    if isinstance(runtime, dict):
        runtime = from_dict(RuntimeConfig, runtime, where="runtime")
    if not isinstance(runtime, Runtime):
        runtime = Runtime.from_config(runtime)
    working = runtime.prepare(copy.deepcopy(model))
    ctx = UnlearnContext(working, train_set, rows, train_set.rows_except(rows), runtime, config,
                         patch_size=patch_size, pretrain=pretrain,
                         oracle_ids=None if oracle_ids is None else torch.as_tensor(oracle_ids).long(),
                         on_epoch=on_epoch)
    x, _, _ = ctx.eval_batcher.batch(ctx.all_rows[:2], augment=False)
    check_classifier(working, x, train_set.num_classes)  # a clear error before any training
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    out = cls(config).run(ctx)
    wall = time.perf_counter() - start
    return UnlearnResult(out.eval(), method, to_dict(config), ctx.history, wall)
