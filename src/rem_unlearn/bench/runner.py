"""Run a grid: the resumable driver that hands cells to an engine and writes their records, then the report.

What one cell does is :mod:`rem_unlearn.bench.cell`; engines (:mod:`rem_unlearn.bench.engines`) run it
in this process, in worker processes or as Ray tasks.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import shlex
import sys
import time
import traceback
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..checkpoint import source_commit
from ..config import from_dict
from ..experiment import data_fingerprint, is_cached
from ..training import quiet as env_quiet
from .cell import failed_record, get_task, task_key
from .engines import LocalEngine, make_engine, spawn_pool
from .grid import Cell, GridConfig, expand
from .store import ResultStore

log = logging.getLogger(__name__)


def _cells_of(grid_or_cells: GridConfig | Iterable[Cell]) -> list[Cell]:
    return expand(grid_or_cells) if isinstance(grid_or_cells, GridConfig) else list(grid_or_cells)


def _pretrain_one(cfg: Any) -> float:
    """Train one model into the cache (in a worker process); its training seconds."""
    return get_task(cfg, warn_untrained=False).train_seconds


def uncached_models(cells: Iterable[Cell]) -> dict[str, Any]:
    """The distinct experiment configs of ``cells`` whose model is not in the cache, by task key."""
    models: dict[str, Any] = {}
    for cell in cells:
        models.setdefault(task_key(cell.experiment), cell.experiment)
    return {key: cfg for key, cfg in models.items() if not is_cached(cfg)}


def pretrain_all(grid_or_cells: GridConfig | Iterable[Cell], quiet: bool = False, workers: int = 1,
                 threads: int | None = None) -> dict[str, str]:
    """Train each distinct (corruption, variant, seed) model of the cells once into the cache.

    ``workers > 1`` trains that many models at a time in spawned processes with
    ``threads`` torch threads each (on 2 cores, two 1-thread processes train 1.43x
    more images per second than one 2-thread process, research/speed/workers.py).
    Returns ``{task_key: traceback}`` of the models that could not be trained
    (their cells are recorded as failed without running).
    """
    missing = {k: copy.deepcopy(cfg) for k, cfg in uncached_models(_cells_of(grid_or_cells)).items()}
    errors: dict[str, str] = {}

    def what(cfg: Any) -> str:
        return f"{cfg.corruption.kind}/{cfg.model.variant} seed {cfg.train.seed}"

    def attempt(key: str, train: Callable[[], float], done: str) -> None:
        """Run ``train``; print ``done`` with its seconds, or keep its traceback as the model's error."""
        try:
            seconds = train()
        except Exception:  # the model's own error, or its worker died
            errors[key] = traceback.format_exc()
            log.error("pre-training %s failed:\n%s", what(missing[key]), errors[key])
            return
        if not quiet:
            print(f"  {done} in {seconds:.1f}s", flush=True)

    if workers > 1 and len(missing) > 1:
        if not quiet:
            print(f"pre-training {len(missing)} models, {workers} at a time", flush=True)
        for cfg in missing.values():
            cfg.runtime.progress = False  # one line per model instead of interleaved bars
        with spawn_pool(workers, threads) as pool:
            futures = {pool.submit(_pretrain_one, cfg): key for key, cfg in missing.items()}
            for future in as_completed(futures):
                key = futures[future]
                attempt(key, future.result, f"{what(missing[key])} trained")
        return errors
    for i, (key, cfg) in enumerate(missing.items(), 1):
        if not quiet:
            print(f"pre-training model {i}/{len(missing)}: {what(cfg)}", flush=True)
        cfg.runtime.progress = not quiet
        attempt(key, lambda cfg=cfg: _pretrain_one(cfg), "trained")
    return errors


def left_to_cells(cells: Iterable[Cell], workers: int) -> set[str]:
    """The models that a cell trains instead of the pre-training pool (task keys).

    The pool trains ``workers`` models at a time, so of ``n`` uncached models the last ``n % workers``
    would train while the other workers idle (the default grid: three models on two workers). Each of
    those is trained by its first cell instead, while the other workers already run the cells of the
    trained models. With fewer models than workers nothing is left: there are no cells to run meanwhile.
    """
    missing = list(uncached_models(cells))
    if workers < 2 or len(missing) < workers:
        return set()
    return set(missing[len(missing) - len(missing) % workers:])


def training_first(todo: list[tuple[str, Cell]], models: set[str]) -> list[tuple[str, Cell]]:
    """``todo`` with the first cell of each model in ``models`` at the front (marked as training it) and
    that model's other cells at the end, so that they find it trained."""
    first, middle, last, seen = [], [], [], set()
    for key, cell in todo:
        model = task_key(cell.experiment)
        if model not in models:
            middle.append((key, cell))
        elif model in seen:
            last.append((key, cell))
        else:
            seen.add(model)
            first.append((key, dataclasses.replace(cell, trains_model=True)))
    return first + middle + last


def pretrain_pool(engine: Any) -> dict[str, Any]:
    """The local engine's workers and threads for :func:`pretrain_all`; other engines pre-train in the driver."""
    if isinstance(engine, LocalEngine):
        return {"workers": engine.workers, "threads": engine.threads}
    return {}


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
             track: str | None = None, track_dir: str | Path | None = None,
             engine_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``grid`` into ``results_dir``, then build the report there.

    Finished cells (a valid record in ``records/``) are skipped; failed ones
    too unless ``retry_failed``.  Each record is written as soon as its cell
    is done, so a killed sweep loses only the cells in flight.  Engine,
    folder and data are checked before anything is written.  Sweeps running
    at the same time over one folder share the cells: each claims a cell
    before running it, skips what another finished, and waits for what
    another is running.  ``engine`` is ``"local"``, ``"ray"``, ``"submitit"`` (with
    ``engine_options``: :func:`make_engine`'s) or an engine object with ``run(cells)``.  Returns the records of this sweep's cells; the
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

    if isinstance(grid, dict):
        grid = from_dict(GridConfig, grid)
    if track:
        track_dir = track_dir or default_log_dir(track, results_dir)
        check_tracker(track, track_dir)
    quiet = quiet or env_quiet()
    cells = expand(grid)
    keyed: dict[str, Cell] = {}
    for cell in cells:
        keyed.setdefault(cell.key, cell)
    runner_engine = make_engine(engine, workers=workers, ray_address=ray_address, threads=threads,
                                **(engine_options or {}))
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
        pool = pretrain_pool(runner_engine)
        if getattr(runner_engine, "trains_in_cells", False):  # jobs on a cluster train their own models
            in_cells = set(uncached_models(c for _, c in todo))
        else:
            in_cells = left_to_cells([c for _, c in todo], pool.get("workers", 1))
        todo = training_first(todo, in_cells)
        pretrain = [c for _, c in todo if task_key(c.experiment) not in in_cells]
        pre_errors = pretrain_all(pretrain, quiet=quiet, **pool) if pretrain else {}
        if in_cells and not quiet:
            print(f"bench: {len(in_cells)} model(s) trained by their first cell while the other workers run cells",
                  flush=True)
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
            cell = keyed.get(record.get("key"))
            if (record.get("status") == "failed" and cell is not None and task_key(cell.experiment) in in_cells
                    and not is_cached(cell.experiment)):  # its first cell could not train it: skip the others
                pre_errors.setdefault(task_key(cell.experiment), str(record.get("error")))
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
