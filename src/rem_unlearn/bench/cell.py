"""One cell of the benchmark: unlearn with one method on one trained model, evaluate, return its record.

:func:`run_cell` is what every engine runs (in-process, in a worker process or as a
Ray task); it never raises: a failure becomes a record with status ``"failed"`` and
the traceback.  Trained models and detections are kept per process, so that
consecutive cells on one model load it once.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import time
import logging
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import cache_key, versions
from ..config import to_dict
from ..experiment import Task, prepare
from ..report.records import RECORD_SCHEMA
from ..training import resolve_precision
from .grid import BENCH_FORMAT, UNCHANGED_METHODS, Cell, cell_key

log = logging.getLogger(__name__)

#: Trained tasks of this process, most recently used last (consecutive cells share a model).
_TASKS: "OrderedDict[str, Task]" = OrderedDict()
MAX_CACHED_TASKS = 4


def task_key(cfg) -> str:
    """Which cells can share one loaded :class:`Task`: the whole config but progress and threads."""
    data = to_dict(cfg)
    for name in ("progress", "threads"):
        data["runtime"].pop(name, None)
    return cache_key(data)


def get_task(cfg, warn_untrained: bool = True) -> Task:
    """The task of ``cfg`` from this process's cache, else :func:`prepare` (loads the cached model)."""
    key = task_key(cfg)
    if key in _TASKS:
        _TASKS.move_to_end(key)
        return _TASKS[key]

    def warn(path: Path) -> None:
        log.warning("no cached model for %s/%s seed %s in %s: training it in this worker "
                    "(put runtime.cache_dir on a shared filesystem for multi-node runs)",
                    cfg.corruption.kind, cfg.model.variant, cfg.train.seed, cfg.runtime.cache_dir)

    task = prepare(cfg, on_train=warn if warn_untrained else None)
    _TASKS[key] = task
    while len(_TASKS) > MAX_CACHED_TASKS:
        _TASKS.popitem(last=False)
    return task


#: Detections of this process, most recently used last: the cells of one (task, rate, seed, scorer) share one.
_DETECTIONS: "OrderedDict[str, Any]" = OrderedDict()


def detected_forget_set(task: Task, cell: Cell, known: torch.Tensor):
    """The known ids extended by the cell's scorer (:func:`rem_unlearn.discovery.discover`), cached per process.

    The scorer sees what a practitioner has: the trained model, the training
    set as stored and the known ids; its seed is the cell's seed.
    """
    from ..discovery import discover as detect

    key = cache_key({"task": task_key(cell.experiment), "rate": float(cell.discovery_rate), "seed": cell.seed,
                     "scorer": cell.scorer, "overrides": cell.scorer_overrides})
    if key not in _DETECTIONS:
        runtime = dataclasses.replace(task.runtime, progress=False)
        _DETECTIONS[key] = detect(task.model, task.corrupted.train, known, cell.scorer, runtime=runtime,
                                  pretrain=task.cfg.train,
                                  **{"seed": cell.seed, **copy.deepcopy(cell.scorer_overrides)})
        while len(_DETECTIONS) > MAX_CACHED_TASKS:
            _DETECTIONS.popitem(last=False)
    _DETECTIONS.move_to_end(key)
    return _DETECTIONS[key]


def forget_quality(forget_ids: torch.Tensor, corrupted_ids: torch.Tensor) -> dict[str, float]:
    """Precision and recall (percent) of a forget set against the corrupted ids (measured, never used)."""
    hits = int(torch.isin(forget_ids, corrupted_ids).sum())
    return {"forget_precision": 100.0 * hits / max(1, len(forget_ids)),
            "forget_recall": 100.0 * hits / max(1, len(corrupted_ids))}


#: The trained model's metrics per task (see :func:`unchanged_metrics`).
_TRAINED_METRICS: dict[str, dict[str, Any]] = {}


def unchanged_metrics(task: Task, model, forget_ids: torch.Tensor) -> dict[str, Any]:
    """``task.evaluate(model, forget_ids)`` for a model with the trained weights, cheaply.

    Everything but forget/retain accuracy is the trained model's and does
    not depend on the discovery rate, so it is evaluated once per task; the
    forget/retain accuracies are measured on ``model`` as the evaluator does.
    """
    from ..metrics import inference_model, known_data_accuracy

    key = task_key(task.cfg)
    if key not in _TRAINED_METRICS:
        _TRAINED_METRICS[key] = task.evaluate(task.model)
    cached = _TRAINED_METRICS[key]
    forget_rows = task.corrupted.train.rows_of(forget_ids)
    return {**cached, **known_data_accuracy(inference_model(model, task.runtime), task.evaluate.train_batcher,
                                            forget_rows)}


def stress_metrics(task: Task, model, known: torch.Tensor, tests: tuple[str, ...], seed: int) -> dict[str, Any]:
    """``verify``'s stress tests on a cell's returned model, measured against the ground truth.

    Per stressed model (relearn, recalibrate): healed (on D_c outside the relearn mix), utility, attack
    success, and the fit on the known rows ``verify`` measures; for the views, their fit.
    """
    from ..metrics import inference_model
    from ..training import accuracy
    from ..verify import VerifyConfig, clean_rows, recalibrated, relearn_split, relearned, views_fit

    cfg = VerifyConfig(tests=list(tests), seed=seed)
    model = inference_model(model, task.runtime)  # capacity cut away once, not in every test
    data, batcher = task.corrupted, task.evaluate.train_batcher
    known_rows = data.train.rows_of(known)
    clean = clean_rows(data.train, known_rows, cfg)
    mixed, measured = relearn_split(known_rows, cfg)
    stressed = {}
    if "relearn" in tests:
        stressed["relearn"] = (relearned(model, batcher, torch.cat([clean, mixed]), cfg), measured)
    if "recalibrate" in tests:
        stressed["recalibrate"] = (recalibrated(model, batcher, clean, cfg), known_rows)
    held_out = data.corrupted_rows[~torch.isin(data.corrupted_rows, mixed)]
    out: dict[str, Any] = {}
    for name, (net, rows) in stressed.items():
        metrics = task.evaluate(net)
        out.update({f"{name}_healed": accuracy(net, batcher, held_out, labels=data.true_labels[held_out]),
                    f"{name}_utility": metrics["utility"], f"{name}_attack_success": metrics["attack_success"],
                    f"{name}_fit": accuracy(net, batcher, rows)})
    if "views" in tests:
        out["views_fit"] = views_fit(model, data.train, known_rows, task.runtime, cfg)
    return out


def clear_task_cache() -> None:
    _TASKS.clear()
    _DETECTIONS.clear()
    _TRAINED_METRICS.clear()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def base_record(cell: Cell, key: str) -> dict[str, Any]:
    """The fields every record has, before the outcome is known."""
    try:
        mcfg = cell.resolved_method
    except Exception:  # an unknown method (e.g. registered only in another process): recorded as failed
        mcfg = None
    return {
        "schema": RECORD_SCHEMA,
        "bench_format": BENCH_FORMAT,
        "key": key,
        "grid_id": cell.grid_id,
        "status": None,
        "error": None,
        "cell": cell.fields,
        "metrics": None,
        "wall_time_s": None,
        "config": {"experiment": to_dict(cell.experiment), "method": mcfg, "method_overrides": cell.overrides,
                   "discovery_rate": cell.discovery_rate, "seed": cell.seed},
        "versions": versions(),
        "host": platform.node(),
        "pid": os.getpid(),
        "threads": torch.get_num_threads(),
        "started": _now(),
    }


def failed_record(cell: Cell, error: str, key: str | None = None) -> dict[str, Any]:
    """A ``failed`` record for a cell that could not run (``error``: a traceback or a message)."""
    record = base_record(cell, key or cell.key)
    record.update(status="failed", error=error or "unknown error", finished=_now())
    return record


class CellKeyMismatchError(RuntimeError):
    """The worker resolves a cell to another key than the driver: it runs other code or another config."""


def run_cell(cell: Cell, check_key: bool = False) -> dict[str, Any]:
    """Unlearn and evaluate one cell; any exception becomes a ``failed`` record, never an error.

    The record is stored under ``cell.key``, computed by the driver.  Engines running cells in
    other processes pass ``check_key``: the worker resolves the key afresh and fails the cell when it
    differs (its code or method defaults changed since the driver started) instead of writing
    results the grid never asked for.
    """
    from ..api import unlearn
    from ..corruptions.discovery import discovered_ids

    try:
        key = cell.key
    except Exception:  # the method does not resolve here: the failure is recorded below
        key = cache_key({"bench_format": BENCH_FORMAT, "unresolvable": repr(cell), "cell": cell.fields})
    record = base_record(cell, key)
    start = time.perf_counter()
    try:
        if check_key and (own := cell_key(dataclasses.replace(cell))) != key:
            raise CellKeyMismatchError(
                f"this worker ({platform.node()}, pid {os.getpid()}, versions {versions()}) resolves the cell to "
                f"key {own}, the driver to {key}: the worker runs different code or method defaults than the "
                "driver (was the source changed during the sweep?), or runtime.precision=auto is bf16 on one "
                f"machine and fp32 on the other (here: {resolve_precision(cell.experiment.runtime)})")
        task = get_task(cell.experiment, warn_untrained=not cell.trains_model)
        corrupted_ids = task.corrupted.corrupted_ids
        forget_ids = known = discovered_ids(corrupted_ids, cell.discovery_rate, cell.seed)
        if cell.detected:
            found = detected_forget_set(task, cell, known)
            forget_ids = found.selected
            record["discovery"] = {"scorer": found.scorer, "k": found.k, "rule": found.rule,
                                   "estimated_size": found.estimated_size, "seconds": found.seconds,
                                   "chosen": found.info.get("chosen")}
        runtime = dataclasses.replace(task.runtime, progress=False)
        result = unlearn(task.model, task.corrupted.train, forget_ids, cell.method, runtime=runtime,
                         pretrain=task.cfg.train, oracle_ids=corrupted_ids, max_utility_drop=None,
                         **copy.deepcopy(cell.overrides))
        if cell.method in UNCHANGED_METHODS:
            metrics = unchanged_metrics(task, result.model, forget_ids)
        else:
            metrics = task.evaluate(result.model, forget_ids)
        metrics.update(forget_quality(forget_ids, corrupted_ids))
        if cell.verify:
            metrics.update(stress_metrics(task, result.model, known, cell.verify, cell.seed))
        record["config"]["method"] = result.config
        record.update(status="ok", metrics=metrics, wall_time_s=result.wall_time_s,
                      n_forget=int(len(forget_ids)), n_known=int(len(known)), n_corrupted=int(len(corrupted_ids)),
                      n_train=int(len(task.corrupted.train)), device=str(runtime.device), precision=runtime.precision,
                      train_seconds=task.train_seconds)
    except Exception:
        record.update(status="failed", error=traceback.format_exc())
    record["threads"] = torch.get_num_threads()
    record["cell_seconds"] = time.perf_counter() - start
    record["finished"] = _now()
    return record


