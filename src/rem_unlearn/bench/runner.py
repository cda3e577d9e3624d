"""Run the benchmark: one record per cell, written as soon as it is done, then the report.

:func:`run_cell` is what every engine runs (in-process, in a worker process,
or as a Ray task); it never raises, a failure becomes a record with status
``"failed"`` and the traceback.  :func:`run_grid` is the resumable driver.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import platform
import shlex
import sys
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from ..checkpoint import cache_key, source_commit, versions
from ..config import from_dict, to_dict
from ..experiment import Task, data_fingerprint, is_cached, prepare
from ..training import quiet as env_quiet
from ..report.records import RECORD_SCHEMA
from .grid import BENCH_FORMAT, UNCHANGED_METHODS, Cell, GridConfig, cell_key, expand, method_config
from .store import ResultStore

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
                                  pretrain=task.cfg.train, patch_size=task.cfg.corruption.patch_size,
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


def unchanged_metrics(task: Task, model, forget_ids: torch.Tensor) -> dict[str, Any]:
    """``task.evaluate(model, forget_ids)`` for a model with the trained weights, cheaply.

    Everything but forget/retain accuracy is the trained model's and does
    not depend on the discovery rate, so it is evaluated once per task; the
    forget/retain accuracies are measured on ``model`` as the evaluator does.
    """
    from ..metrics import inference_model, known_data_accuracy

    cached = getattr(task, "_bench_trained_metrics", None)
    if cached is None:
        cached = task.evaluate(task.model)
        task._bench_trained_metrics = cached  # type: ignore[attr-defined]
    forget_rows = task.corrupted.train.rows_of(forget_ids)
    return {**cached, **known_data_accuracy(inference_model(model, task.runtime), task.evaluate.train_batcher,
                                            forget_rows)}


def clear_task_cache() -> None:
    _TASKS.clear()
    _DETECTIONS.clear()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def base_record(cell: Cell, key: str | None = None) -> dict[str, Any]:
    """The fields every record has, before the outcome is known."""
    try:
        mcfg = method_config(cell.method, cell.overrides)
    except Exception:  # an unknown method (e.g. registered only in another process)
        mcfg = None
    return {
        "schema": RECORD_SCHEMA,
        "bench_format": BENCH_FORMAT,
        "key": key or cell_key(cell),
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
    record = base_record(cell, key)
    record.update(status="failed", error=error or "unknown error", finished=_now())
    return record


class CellKeyMismatchError(RuntimeError):
    """The worker resolves a cell to another key than the driver: it runs other code or another config."""


def run_cell(cell: Cell, key: str | None = None) -> dict[str, Any]:
    """Unlearn and evaluate one cell; any exception becomes a ``failed`` record, never an error.

    ``key`` is the driver's key of the cell (engines running cells in other
    processes pass it): the record is stored under it, and a worker that
    computes another key (e.g. its code changed since the driver started)
    fails the cell instead of writing results the grid never asked for.
    """
    from ..api import unlearn
    from ..corruptions.discovery import discover

    try:
        own = cell_key(cell)
    except Exception:
        own = None
    record = base_record(cell, key or own or cache_key({"bench_format": BENCH_FORMAT, "unresolvable": repr(cell),
                                                         "cell": cell.fields}))
    start = time.perf_counter()
    try:
        if key is not None and own != key:
            raise CellKeyMismatchError(
                f"this worker ({platform.node()}, pid {os.getpid()}, versions {versions()}) resolves the cell to "
                f"key {own}, the driver to {key}: the worker runs different code or method defaults than the "
                "driver (was the source changed during the sweep?)")
        task = get_task(cell.experiment)
        corrupted_ids = task.corrupted.corrupted_ids
        forget_ids = known = discover(corrupted_ids, cell.discovery_rate, cell.seed)
        if cell.detected:
            found = detected_forget_set(task, cell, known)
            forget_ids = found.selected
            record["discovery"] = {"scorer": found.scorer, "k": found.k, "rule": found.rule,
                                   "estimated_size": found.estimated_size, "seconds": found.seconds,
                                   "chosen": found.info.get("chosen")}
        runtime = dataclasses.replace(task.runtime, progress=False)
        result = unlearn(task.model, task.corrupted.train, forget_ids, cell.method, runtime=runtime,
                         pretrain=task.cfg.train, oracle_ids=corrupted_ids,
                         patch_size=task.cfg.corruption.patch_size, **copy.deepcopy(cell.overrides))
        if cell.method in UNCHANGED_METHODS:
            metrics = unchanged_metrics(task, result.model, forget_ids)
        else:
            metrics = task.evaluate(result.model, forget_ids)
        metrics.update(forget_quality(forget_ids, corrupted_ids))
        record["config"]["method"] = result.config
        record.update(status="ok", metrics=metrics, wall_time_s=result.wall_time_s,
                      n_forget=int(len(forget_ids)), n_known=int(len(known)), n_corrupted=int(len(corrupted_ids)),
                      n_train=int(len(task.corrupted.train)), device=str(runtime.device),
                      train_seconds=task.train_seconds)
    except Exception:
        record.update(status="failed", error=traceback.format_exc())
    record["threads"] = torch.get_num_threads()
    record["cell_seconds"] = time.perf_counter() - start
    record["finished"] = _now()
    return record


def _cells_of(grid_or_cells: GridConfig | Iterable[Cell]) -> list[Cell]:
    return expand(grid_or_cells) if isinstance(grid_or_cells, GridConfig) else list(grid_or_cells)


def pretrain_all(grid_or_cells: GridConfig | Iterable[Cell], quiet: bool = False) -> dict[str, str]:
    """Train each distinct (corruption, variant, seed) model of the cells once, serially, into the cache.

    Returns ``{task_key: traceback}`` of the models that could not be trained
    (their cells are recorded as failed without running).
    """
    todo: dict[str, Any] = {}
    for cell in _cells_of(grid_or_cells):
        todo.setdefault(task_key(cell.experiment), cell.experiment)
    missing = {k: cfg for k, cfg in todo.items() if not is_cached(cfg)}
    errors: dict[str, str] = {}
    for i, (key, cfg) in enumerate(missing.items(), 1):
        what = f"{cfg.corruption.kind}/{cfg.model.variant} seed {cfg.train.seed}"
        if not quiet:
            print(f"pre-training model {i}/{len(missing)}: {what}", flush=True)
        cfg = copy.deepcopy(cfg)
        cfg.runtime.progress = not quiet
        try:
            task = get_task(cfg, warn_untrained=False)
            if not quiet:
                print(f"  trained in {task.train_seconds:.1f}s", flush=True)
        except Exception:
            errors[key] = traceback.format_exc()
            log.error("pre-training %s failed:\n%s", what, errors[key])
    return errors


def _status_line(record: dict[str, Any], done: int, total: int) -> str:
    c = record["cell"]
    where = (f"{c['method']:<12} {c['corruption']:<10} rate {c['discovery_rate']:<5g} seed {c['seed']}"
             f"{'' if c['variant'] == 'capacity' else ' ' + c['variant']}")
    if record["status"] == "ok":
        m = record["metrics"]
        return (f"[{done}/{total}] {where}  score {m['score']:6.2f}  healed {m['healed']:6.2f}  "
                f"utility {m['utility']:6.2f}  ({record['wall_time_s']:.1f}s)")
    lines = [ln for ln in str(record.get("error") or "").splitlines() if ln.strip()]
    return f"[{done}/{total}] {where}  FAILED: {lines[-1].strip() if lines else 'unknown error'}"


#: Seconds between looks at cells another sweep over the same folder is running.
POLL_SECONDS = 2.0


def current_command() -> str:
    """The command line of this process, as a user would type it again."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if argv0.name.startswith("rem-unlearn") or argv0.parent.name == "rem_unlearn":
        prog = ["rem-unlearn"]
    elif argv0.name == "__main__.py":  # python -m some_package
        prog = ["python", "-m", argv0.parent.name]
    else:
        prog = [argv0.name]
    return shlex.join([*prog, *sys.argv[1:]])


def run_grid(grid: GridConfig | dict, results_dir: str | Path, engine: Any = "local", workers: int | None = 1,
             ray_address: str | None = None, quiet: bool = False, retry_failed: bool = False,
             force: bool = False, threads: int | None = None, command: str | None = None,
             track: str | None = None, track_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``grid`` into ``results_dir``, then build the report there.

    Finished cells (a valid record in ``records/``) are skipped; failed ones
    too unless ``retry_failed``.  Each record is written as soon as its cell
    is done, so a killed sweep loses only the cells in flight.  Engine,
    folder and data are checked before anything is written.  Sweeps running
    at the same time over one folder share the cells: each claims a cell
    before running it, skips what another finished, and waits for what
    another is running.  ``engine`` is ``"local"``, ``"ray"`` or an engine
    object with ``run(cells)``.  Returns the records of this sweep's cells; the
    report covers every record of the folder's grid (all seeds run into it so far).

    Every record this sweep writes carries ``command`` (default: this
    process's command line) and ``commit`` (:func:`source_commit`), stamped
    here because cells may run in other processes or on other machines.
    ``track`` (``tensorboard``/``mlflow``) also logs each finished cell to
    ``track_dir`` as one run (:func:`rem_unlearn.tracking.log_record`).
    """
    from tqdm.auto import tqdm

    from ..report import build_report, load_records
    from ..tracking import check_tracker, default_log_dir, log_record
    from .engines import make_engine

    if isinstance(grid, dict):
        grid = from_dict(GridConfig, grid)
    if track:
        track_dir = track_dir or default_log_dir(track, results_dir)
        check_tracker(track, track_dir)
    quiet = quiet or env_quiet()
    cells = expand(grid)
    keyed: dict[str, Cell] = {}
    for cell in cells:
        keyed.setdefault(cell_key(cell), cell)
    runner_engine = make_engine(engine, workers=workers, ray_address=ray_address, threads=threads)
    store = ResultStore(results_dir)
    store.check_writable()
    store.check_grid(grid, force=force)
    for data in {repr(c.experiment.data): c.experiment.data for c in cells}.values():
        data_fingerprint(data)  # a data.root without the dataset fails here, as one error
    with store.sweep():
        store.write_grid(grid)
        planned = {k: r for k, r in store.scan().items() if k in keyed}
        for key, record in planned.items():  # reused from another grid (--force): now also this grid's
            if record.get("grid_id") != keyed[key].grid_id:
                planned[key] = {**record, "grid_id": keyed[key].grid_id}
                store.write(planned[key])
        done = {k for k, r in planned.items() if ResultStore.is_done(r, retry_failed)}
        todo = [(k, c) for k, c in keyed.items() if k not in done]
        if not quiet:
            print(f"bench: {len(keyed)} cells, {len(done)} already done, {len(todo)} to run "
                  f"({getattr(runner_engine, 'describe', lambda: type(runner_engine).__name__)()}) -> {store.root}",
                  flush=True)
        pre_errors = pretrain_all([c for _, c in todo], quiet=quiet) if todo else {}
        bar = tqdm(total=len(keyed), initial=len(done), unit="cell", desc="bench", disable=quiet,
                   dynamic_ncols=True)
        finished = len(done)
        claims: dict[str, Any] = {}
        stamp = {"command": command or current_command(), "commit": source_commit()}

        def record_done(record: dict[str, Any], written: bool = False) -> None:
            nonlocal finished
            if not written:
                if record.get("key") not in keyed:  # a custom engine or run_cell that re-keyed the cell
                    log.error("record %s (%s) is not a cell of this grid; written but left out of the report",
                              record.get("key"), record.get("cell"))
                record.update(stamp)
                store.write(record)
                if track:
                    log_record(track, track_dir, record)
            claim = claims.pop(record.get("key"), None)
            if claim is not None:
                claim.release()
            finished += 1
            bar.update(1)
            if not quiet:
                bar.write(_status_line(record, finished, len(keyed)) + (" (another sweep)" if written else ""))

        def claimed(pending: list[tuple[str, Cell]], deferred: list[tuple[str, Cell]]) -> Iterator[Cell]:
            """The cells of ``pending`` to run now: claimed by this sweep and not finished by another meanwhile."""
            for key, cell in pending:
                claim = store.claim(key)
                if claim is None:  # another sweep is running it
                    deferred.append((key, cell))
                    continue
                claims[key] = claim
                other = store.read(key)
                if other is not None and other != planned.get(key):  # another sweep wrote it meanwhile
                    record_done(other, written=True)
                elif (err := pre_errors.get(task_key(cell.experiment))) is not None:
                    record_done(failed_record(cell, "pre-training the model failed:\n" + err, key))
                else:
                    yield cell

        pending = todo
        try:
            while pending:
                deferred: list[tuple[str, Cell]] = []
                for record in runner_engine.run(claimed(pending, deferred)):
                    record_done(record)
                pending = deferred
                if pending:
                    if not quiet:
                        bar.write(f"bench: waiting for {len(pending)} cell(s) that another sweep is running")
                    time.sleep(POLL_SECONDS)
        finally:
            for claim in claims.values():
                claim.release()
            bar.close()
        records = store.records(keyed)
        build_report(load_records(store.root), store.root)  # every seed run into this folder so far
    return records
