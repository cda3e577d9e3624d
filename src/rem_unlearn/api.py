"""The practitioner's entry point: ``unlearn(model, train_set, forget_ids, method="rem")``."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .config import P_MEM, ConfigError, RuntimeConfig, TrainConfig, from_dict, to_dict
from .data.base import ImageDataset
from .data.user import UserDataError
from .errors import MAX_UTILITY_DROP, UtilityDropError
from .ids import ForgetIdError, as_integers
from .methods.base import UnlearnContext, retain_sample
from .methods.registry import get_method, method_config
from .metrics import known_data_accuracy
from .models import discard, expand, gates
from .models.expand import classifier_outputs
from .training import Batcher, NonFiniteLossError, Runtime, accuracy

__all__ = ["MAX_UTILITY_DROP", "ForgetIdError", "UnlearnResult", "UserModelResult", "UtilityDropError",
           "forget_rows", "match_classes", "unlearn", "unlearn_user_model"]


@dataclass
class UnlearnResult:
    model: nn.Module  # use in drop mode (the default), or call :meth:`discard`
    method: str
    config: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    selected: str | None = None  # what the proxy selection kept: "start" (the original model), "round 3", ...
    retain_before: float | None = None  # accuracy (%) on a fixed sample of D_r, stored labels: the original model
    retain_after: float | None = None  # the same for the returned model

    @property
    def utility_drop(self) -> float | None:
        """Points of retain accuracy lost against the original (what the utility guard reads)."""
        return None if self.retain_before is None else self.retain_before - self.retain_after

    @property
    def improved(self) -> bool | None:
        """False when the selection kept the original model (no round beat it); None without a selection."""
        return None if self.selected is None else self.selected != "start"

    def discard(self) -> nn.Module:
        """The model with the redirection capacity physically removed (plain module)."""
        from .models import discard

        return discard(self.model)


def forget_rows(train: ImageDataset, forget_ids) -> torch.Tensor:
    """Rows of D_f in ``train``; empty, non-integer, duplicated or unknown ids are clear errors."""
    ids = as_integers(forget_ids, "forget ids")
    if ids.numel() == 0:
        raise ForgetIdError("the forget set is empty: give at least one sample id")
    uniq, counts = torch.unique(ids, return_counts=True)
    if bool((counts > 1).any()):
        raise ForgetIdError(f"duplicated forget ids: {uniq[counts > 1][:5].tolist()}")
    known = torch.isin(ids, train.ids)
    if not bool(known.all()):
        bad = ids[~known][:5].tolist()
        raise ForgetIdError(f"forget ids not in the training set ({len(train)} samples, ids "
                            f"{int(train.ids.min())}..{int(train.ids.max())}): {bad}")
    return train.rows_of(ids)


def match_classes(model: nn.Module, example_input: torch.Tensor, train: ImageDataset) -> ImageDataset:
    """``train`` with ``num_classes`` taken from the model's outputs, not from the largest label.

    Labels beyond the outputs, or class names (a ``.npz``'s ``class_names``,
    an image folder's classes) that do not match them, are clear errors.
    """
    k = classifier_outputs(model, example_input)
    top = int(train.labels.max())
    if top >= k:
        raise UserDataError(f"{train.name}: label {top} is out of range for a model with {k} outputs "
                            f"(labels must be 0..{k - 1})")
    if train.class_names and len(train.class_names) != k:
        raise UserDataError(f"{train.name} has {len(train.class_names)} classes "
                            f"({', '.join(train.class_names[:4])}{', ...' if len(train.class_names) > 4 else ''}) "
                            f"but the model has {k} outputs")
    return train if train.num_classes == k else replace(train, num_classes=k)


def working_copy(model: nn.Module, train_set: ImageDataset, runtime: Runtime | RuntimeConfig | dict | None
                 ) -> tuple[nn.Module, ImageDataset, Runtime]:
    """A private copy of ``model`` on the runtime's device, ``train_set`` with the model's number of classes,
    and the runtime: the caller's model is never touched."""
    if isinstance(runtime, dict):
        runtime = from_dict(RuntimeConfig, runtime, where="runtime")
    if not isinstance(runtime, Runtime):
        runtime = Runtime.from_config(runtime)
    working = runtime.prepare(copy.deepcopy(model))
    x, _, _ = Batcher(train_set, runtime).batch(torch.arange(min(2, len(train_set))), augment=False)
    return working, match_classes(working, x, train_set), runtime


def check_utility(method: str, result: UnlearnResult, max_drop: float | None, returned=None) -> None:
    """Raise :class:`UtilityDropError` (carrying ``returned``, default ``result``) when the returned model lost
    more than ``max_drop`` points of retain accuracy; ``None`` accepts any drop."""
    if max_drop is not None and result.utility_drop is not None and result.utility_drop > max_drop:
        raise UtilityDropError(method, result.retain_before, result.retain_after, max_drop,
                               result if returned is None else returned)


def unlearn(model: nn.Module, train_set: ImageDataset, forget_ids, method: str = "rem", *,
            runtime: Runtime | RuntimeConfig | dict | None = None, pretrain: TrainConfig | None = None,
            oracle_ids=None, on_epoch=None, max_utility_drop: float | None = MAX_UTILITY_DROP,
            **overrides) -> UnlearnResult:
    """Unlearn ``forget_ids`` from ``model``; the input model is never modified.

    ``overrides`` are fields of the method's config (e.g. ``epochs=5``,
    ``optim={"lr": 0.01}``); an unknown name is an error listing the valid ones.
    A result that lost more than ``max_utility_drop`` points of retain accuracy
    (a fixed sample of D_r, stored labels) raises :class:`UtilityDropError`,
    which carries the result; ``None`` accepts any drop.
    """
    cls, config = checked_method(method, overrides, max_utility_drop)
    rows = forget_rows(train_set, forget_ids)
    check_retained(rows, train_set)
    working, train_set, runtime = working_copy(model, train_set, runtime)  # a clear error before any training
    return unlearn_working(cls, config, working, lambda: copy.deepcopy(model), train_set, rows, runtime, pretrain,
                           oracle_ids, on_epoch, method, max_utility_drop)


def checked_method(method: str, overrides: dict, max_utility_drop: float | None) -> tuple[type, Any]:
    """The method's class and config: a bad name, override or ``max_utility_drop`` fails before any work."""
    if max_utility_drop is not None and not max_utility_drop >= 0:
        raise ConfigError(f"max_utility_drop must be a number of points >= 0 or None, got {max_utility_drop!r}")
    return get_method(method), method_config(method, overrides)


def check_retained(rows: torch.Tensor, train_set: ImageDataset) -> None:
    if len(rows) == len(train_set):
        raise ForgetIdError("the forget set covers the whole training set; nothing would be retained")


def unlearn_working(cls, config, working: nn.Module, fresh, train_set: ImageDataset, rows: torch.Tensor,
                    runtime: Runtime, pretrain, oracle_ids, on_epoch, method: str,
                    max_utility_drop: float | None) -> UnlearnResult:
    """:func:`unlearn` once its checks are done: ``working`` is a private copy (modified in place) and ``rows``
    are validated, so callers that made them already do not make them again.  ``fresh()`` returns an untouched
    copy of the input model, needed only for the fp32 rerun."""
    try:
        return run_method(cls, config, working, train_set, rows, runtime, pretrain, oracle_ids, on_epoch,
                          method, max_utility_drop)
    except NonFiniteLossError as err:
        if runtime.autocast_dtype is None:
            raise
        # bf16 autocast overflows in some LayerNorm models (a transformers ConvNext, docs/defaults.md); the
        # same run in fp32 does not, so it reruns once from a fresh copy, and the history says so.
        fp32 = replace(runtime, autocast_dtype=None)
        return run_method(cls, config, fp32.prepare(fresh()), train_set, rows, fp32, pretrain, oracle_ids, on_epoch,
                          method, max_utility_drop, note={"event": "fp32 rerun", "reason": str(err)})


def run_method(cls, config, working: nn.Module, train_set: ImageDataset, rows: torch.Tensor, runtime: Runtime,
               pretrain, oracle_ids, on_epoch, method: str, max_utility_drop: float | None,
               note: dict | None = None) -> UnlearnResult:
    """One run of the method on ``working`` (modified in place), measured by the utility guard."""
    ctx = UnlearnContext(working, train_set, rows, train_set.rows_except(rows), runtime, config,
                         pretrain=pretrain,
                         oracle_ids=None if oracle_ids is None else torch.as_tensor(oracle_ids).long(),
                         on_epoch=on_epoch)
    if note is not None:
        ctx.log(**note)
    guard_rows = retain_sample(ctx.retain_rows, config)
    retain_before = accuracy(working, ctx.eval_batcher, guard_rows)
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    out = cls(config).run(ctx)
    wall = time.perf_counter() - start
    selected = next((row.get("at") for row in reversed(ctx.history) if row.get("event") == "selected"), None)
    result = UnlearnResult(out.eval(), method, to_dict(config), ctx.history, wall, selected, retain_before,
                           accuracy(out, ctx.eval_batcher, guard_rows))
    check_utility(method, result, max_utility_drop)
    return result


@dataclass
class UserModelResult:
    """:func:`unlearn_user_model`'s outcome: the repaired model in the user's own architecture, and evidence."""

    model: nn.Module  # the user's class, keys and shapes (with the capacity when ``keep_capacity``)
    result: UnlearnResult  # the run on the expanded model (history, selection, config, time)
    before: dict[str, float]  # forget/retain accuracy (stored labels) of the trained model
    after: dict[str, float]  # the same for ``model``
    expansion_report: dict[str, str] = field(default_factory=dict)  # layer -> how it got capacity ({} if gated)


def unlearn_user_model(model: nn.Module, train_set: ImageDataset, forget_ids, method: str = "rem", *,
                       runtime: Runtime | RuntimeConfig | dict | None = None, keep_capacity: bool = False,
                       expand_layers: list[str] | None = None, expand_width: float = 0.5, p_mem: float = P_MEM,
                       expand_seed: int = 0, expand_how: str = "auto", on_expand=None, on_epoch=None,
                       max_utility_drop: float | None = MAX_UTILITY_DROP, **overrides) -> UserModelResult:
    """Unlearn from a model trained without reserved capacity: ``expand``, unlearn, ``discard``.

    A model that already has partition gates is used as it is.  The returned
    model has the user's class, keys and shapes (unless ``keep_capacity``), so
    their own code loads its state_dict.  The forget/retain accuracies before
    and after are measured on the known data only.  ``on_expand(report)`` is called once
    the capacity is in place, before the (long) unlearning run.  The utility
    guard is :func:`unlearn`'s; its error carries the :class:`UserModelResult`.
    """
    return unlearn_user_rows(model, train_set, forget_rows(train_set, forget_ids), method, runtime=runtime,
                             keep_capacity=keep_capacity, expand_layers=expand_layers, expand_width=expand_width,
                             p_mem=p_mem, expand_seed=expand_seed, expand_how=expand_how, on_expand=on_expand,
                             on_epoch=on_epoch, max_utility_drop=max_utility_drop, **overrides)


def unlearn_user_rows(model: nn.Module, train_set: ImageDataset, rows: torch.Tensor, method: str = "rem", *,
                      runtime: Runtime | RuntimeConfig | dict | None = None, keep_capacity: bool = False,
                      expand_layers: list[str] | None = None, expand_width: float = 0.5, p_mem: float = P_MEM,
                      expand_seed: int = 0, expand_how: str = "auto", on_expand=None, on_epoch=None,
                      max_utility_drop: float | None = MAX_UTILITY_DROP, **overrides) -> UserModelResult:
    """:func:`unlearn_user_model` on rows of ``train_set`` already validated by :func:`forget_rows`: one working
    copy of ``model``, expanded and handed to the method as it is."""
    cls, config = checked_method(method, overrides, None)  # a bad method or override fails before the expansion
    check_retained(rows, train_set)
    big, train_set, runtime = working_copy(model, train_set, runtime)
    batcher = Batcher(train_set, runtime)
    gated = bool(gates(big))

    def with_capacity(working: nn.Module) -> nn.Module:
        if gated:
            return working
        x, _, _ = batcher.batch(torch.arange(min(2, len(train_set))), augment=False)
        return runtime.prepare(expand(working, layers=expand_layers, width=expand_width, p_mem=p_mem,
                                      seed=expand_seed, example_input=x, how=expand_how))

    big = with_capacity(big)
    report: dict[str, str] = {} if gated else big.expansion_report
    if not gated and on_expand is not None:
        on_expand(report)
    before = known_data_accuracy(big, batcher, rows)
    # The run changes ``big``; an fp32 rerun starts again from the caller's model (expand is deterministic).
    result = unlearn_working(cls, config, big, lambda: with_capacity(working_copy(model, train_set, runtime)[0]),
                             train_set, rows, runtime, None, None, on_epoch, method, None)
    final = result.model if keep_capacity else discard(result.model)
    after = known_data_accuracy(runtime.prepare(final), batcher, rows)
    repaired = UserModelResult(final, result, before, after, report)
    check_utility(method, result, max_utility_drop, repaired)
    return repaired
