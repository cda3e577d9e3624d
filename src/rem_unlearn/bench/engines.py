"""Where cells run: in this process, in a local process pool, on Ray, or as SLURM jobs (submitit).

An engine has ``run(cells)``, a generator yielding one record per cell as
each completes (in completion order); the driver writes the records.  The
built-in engines take the next cell only when a worker is free, so the
driver claims a cell just before it runs (two sweeps over one folder share
the work instead of doing it twice).  The same cell gives the same metrics
on every engine when the torch thread count is the same (pass ``threads``):
every cell seeds its own randomness.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from ..config import ConfigError
from ..errors import UserError
from . import cell as bench_cell  # by module, so that tests can stand in for run_cell
from .grid import Cell


class EngineUnavailableError(UserError, ImportError):
    """An engine whose optional dependency is not installed."""


def _cores() -> int:
    return os.cpu_count() or 1


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def spawn_pool(workers: int, threads: int | None) -> ProcessPoolExecutor:
    """``workers`` spawned processes with ``threads`` torch threads each (cells, pre-training)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=set_threads, initargs=(threads,))


class LocalEngine:
    """``workers=1``: cells one after another in this process.

    ``workers>1``: a pool of spawned processes with ``cores // workers`` torch
    threads each, so workers x threads never exceeds the cores.
    """

    def __init__(self, workers: int = 1, threads: int | None = None):
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.workers = int(workers)
        self.threads = threads if threads else (None if self.workers == 1 else max(1, _cores() // self.workers))

    def describe(self) -> str:
        threads = self.threads or torch.get_num_threads()
        return f"local engine, {self.workers} worker(s) x {threads} thread(s)"

    def run(self, cells: Iterable[Cell]) -> Iterator[dict[str, Any]]:
        if self.workers == 1:
            yield from self._serial(iter(cells))
        else:
            yield from self._pool(iter(cells))

    def _serial(self, cells: Iterator[Cell]) -> Iterator[dict[str, Any]]:
        before = torch.get_num_threads()
        set_threads(self.threads)
        try:
            for cell in cells:
                yield bench_cell.run_cell(cell)
        finally:
            torch.set_num_threads(before)

    def _pool(self, cells: Iterator[Cell]) -> Iterator[dict[str, Any]]:
        pool = spawn_pool(self.workers, self.threads)
        try:
            yield from bounded(cells, self.workers, lambda cell: pool.submit(bench_cell.run_cell, cell, True),
                               _wait_futures, lambda fut: fut.result(), "worker process failed")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _wait_futures(pending: list) -> tuple[list, list]:
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    return list(done), list(rest)


def bounded(cells: Iterator[Cell], slots: int, submit: Callable[[Cell], Any], wait_any: Callable[[list], tuple],
            result: Callable[[Any], dict[str, Any]], what: str) -> Iterator[dict[str, Any]]:
    """Keep at most ``slots`` cells in flight, taking the next cell only when one finishes.

    ``submit(cell)`` starts a cell and returns a handle, ``wait_any(handles)``
    returns (finished, still running), ``result(handle)`` its record; a
    handle whose result raises (its worker died) becomes a ``failed`` record.
    """
    running: dict[Any, Cell] = {}

    def fill() -> None:
        while len(running) < slots:
            cell = next(cells, None)
            if cell is None:
                return
            running[submit(cell)] = cell

    fill()
    while running:
        finished, _ = wait_any(list(running))
        for handle in finished:
            cell = running.pop(handle)
            try:
                record = result(handle)
            except Exception:  # the worker died (e.g. killed for memory) or the cell could not be sent
                record = bench_cell.failed_record(cell, f"{what}:\n" + traceback.format_exc())
            yield record
        fill()


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise EngineUnavailableError("the ray engine needs Ray, which is not installed: "
                                     "pip install 'rem-unlearn[ray]'") from exc
    return ray


def _worker_cell(cell: Cell, threads: int | None) -> dict[str, Any]:
    """A cell in another process (a Ray task, a SLURM job), which checks the driver's cell key."""
    set_threads(threads)
    from rem_unlearn.bench.cell import run_cell as worker_run_cell

    return worker_run_cell(cell, check_key=True)


def _ray_cell(cell: Cell, threads: int | None, shipped: list) -> dict[str, Any]:
    """A cell on a Ray worker, with the driver's data (always) and model (where this node's cache lacks it)."""
    import ray

    from rem_unlearn.experiment import install_model, provide_data

    data, model = shipped  # object refs inside a list: Ray leaves them for this task to fetch
    provide_data(cell.experiment.data, ray.get(data))
    received = model is not None and install_model(cell.experiment, ray.get(model))
    return {**_worker_cell(cell, threads), "model_source": "received" if received else "node cache"}


class RayEngine:
    """One Ray task per cell; records come back to the driver, which writes them.

    ``address=None`` starts a local Ray instance (``num_cpus`` = the cores, or
    ``workers x threads``) unless Ray is already initialised in this process;
    ``address="auto"`` or ``"ray://host:10001"`` joins a cluster.  The nodes need
    no shared disk: the driver puts each data split and each model it
    pre-trained into Ray's object store once, every task takes the data from
    there, and a node whose ``runtime.cache_dir`` lacks a model writes the
    driver's copy into it (records say ``model_source``).  Each task reserves ``threads`` CPUs (default:
    ``cores // workers`` when ``workers`` is given, else 1) and one GPU when
    the cells run on ``cuda`` (override with ``num_gpus``).
    """

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int | None = None,
                 num_gpus: float | None = None):
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.address = address or None
        self.workers = workers
        self.threads = threads if threads else (max(1, _cores() // workers) if workers else 1)
        self.num_gpus = num_gpus

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return f"ray engine on {where}, {self.threads} thread(s) per cell"

    def run(self, cells: Iterable[Cell]) -> Iterator[dict[str, Any]]:
        cells = iter(cells)
        first = next(cells, None)
        if first is None:
            return
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
            if self.address:
                ray.init(address=self.address, **kwargs)
            else:
                cpus = self.workers * self.threads if self.workers else _cores()
                ray.init(num_cpus=max(cpus, self.threads), **kwargs)
            started = True
        gpus = self.num_gpus
        if gpus is None:
            gpus = 1 if first.experiment.runtime.device == "cuda" else 0
        task = ray.remote(num_cpus=self.threads, num_gpus=gpus, max_retries=0)(_ray_cell)
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.threads)
        if gpus:
            slots = min(slots, int(resources.get("GPU", 0) // gpus))
        submitted: list = []
        shipped: dict[str, Any] = {}  # data config or model -> object ref, put once

        def ship(cell: Cell) -> list:
            from ..experiment import data_id, is_cached, load_data, model_files
            from .cell import task_key

            cfg = cell.experiment
            data, model = f"data {data_id(cfg.data)}", f"model {task_key(cfg)}"
            if data not in shipped:
                shipped[data] = ray.put(load_data(cfg.data))
            if model not in shipped:
                shipped[model] = ray.put(model_files(cfg)) if is_cached(cfg) else None
            return [shipped[data], shipped[model]]

        def submit(cell: Cell):
            submitted.append(task.remote(cell, self.threads, ship(cell)))
            return submitted[-1]

        def wait_any(pending: list) -> tuple[list, list]:
            return ray.wait(pending, num_returns=1)

        try:
            yield from bounded(itertools.chain([first], cells), max(1, slots), submit, wait_any, ray.get,
                               "ray task failed")
        finally:
            for ref in submitted:
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def import_submitit():
    try:
        import submitit
    except ImportError as exc:
        raise EngineUnavailableError("the submitit engine needs submitit, which is not installed: "
                                     "pip install 'rem-unlearn[slurm]'") from exc
    return submitit


class SubmititEngine:
    """Cells as SLURM jobs through submitit: one job array per sweep; records come back to the driver.

    On ``cluster="slurm"`` every cell of the sweep is one task of a single job
    array, at most ``workers`` running at a time (``slurm_array_parallelism``).
    ``cluster="local"`` (submitit's local executor: tests, or one machine
    without SLURM) submits one job per cell, ``workers`` at a time, so the
    cores are never oversubscribed.  Jobs train the models they need
    themselves (under the cache's per-model lock, on the shared disk that
    SLURM clusters have), so the driver trains nothing.  A killed sweep
    leaves claims that die with the driver; the next run resubmits exactly the
    cells without a record.  ``slurm`` is passed to ``update_parameters``
    (``partition``, ``time`` ...; ``slurm_`` prefix optional).
    """

    trains_in_cells = True  # the runner leaves pre-training to the cells

    def __init__(self, folder: str | Path, cluster: str = "slurm", workers: int | None = None,
                 threads: int | None = None, gpus: int = 0, timeout_min: int = 240, slurm: dict | None = None,
                 poll_seconds: float | None = None):
        if cluster not in ("slurm", "local"):
            raise ConfigError(f"unknown submitit cluster {cluster!r}; choose slurm or local")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.folder, self.cluster = Path(folder), cluster
        self.workers = workers or (1 if cluster == "local" else 64)
        self.threads = threads or (max(1, _cores() // self.workers) if cluster == "local" else 1)
        self.gpus, self.timeout_min = gpus, timeout_min
        # SLURM's accounting is asked every 5 s; a local job is a process here, and a cell can take seconds.
        self.poll_seconds = poll_seconds if poll_seconds is not None else (5.0 if cluster == "slurm" else 0.2)
        self.slurm = {k if k.startswith("slurm_") else f"slurm_{k}": v for k, v in (slurm or {}).items()}

    def describe(self) -> str:
        return (f"submitit engine ({self.cluster}), {self.workers} job(s) at a time x {self.threads} thread(s), "
                f"logs in {self.folder}")

    def executor(self):
        submitit = import_submitit()
        executor = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(timeout_min=self.timeout_min, cpus_per_task=self.threads,
                                   gpus_per_node=self.gpus, name="rem-unlearn", slurm_array_parallelism=self.workers,
                                   **self.slurm)
        return executor

    def run(self, cells: Iterable[Cell]) -> Iterator[dict[str, Any]]:
        executor = self.executor()
        cells = iter(cells)
        if self.cluster == "slurm":  # one array of every cell; SLURM runs `workers` of its tasks at a time
            cells = list(cells)
            if not cells:
                return
            tasks = iter(executor.map_array(_worker_cell, cells, [self.threads] * len(cells)))
            start, slots = (lambda cell: next(tasks)), len(cells)  # the array's task of each cell, in order
            cells = iter(cells)
        else:  # the local executor has no parallelism limit: `workers` jobs in flight
            start, slots = (lambda cell: executor.submit(_worker_cell, cell, self.threads)), self.workers
        jobs: list = []

        def submit(cell: Cell):
            jobs.append(start(cell))
            return jobs[-1]

        try:
            yield from bounded(cells, slots, submit, self._wait_any, lambda job: job.result(), "submitit job failed")
        finally:
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)

    def _wait_any(self, pending: list) -> tuple[list, list]:
        while True:
            done = [job for job in pending if job.done()]
            if done:
                return done, [job for job in pending if job not in done]
            time.sleep(self.poll_seconds)


def make_engine(engine: Any = "local", workers: int | None = None, ray_address: str | None = None,
                threads: int | None = None, submitit_folder: str | Path | None = None,
                submitit_cluster: str = "slurm", slurm: dict | None = None):
    """An engine object from its name (``"local"``/``"ray"``/``"submitit"``); an object with ``run`` is returned
    as is."""
    if hasattr(engine, "run"):
        return engine
    for flag, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if engine == "local":
        return LocalEngine(workers or 1, threads=threads)
    if engine == "ray":
        import_ray()  # fail before any work when Ray is missing
        return RayEngine(ray_address, workers=workers, threads=threads)
    if engine == "submitit":
        import_submitit()
        if submitit_folder is None:
            raise ConfigError("the submitit engine needs a folder for its job files (--submitit-folder)")
        return SubmititEngine(submitit_folder, submitit_cluster, workers=workers, threads=threads, slurm=slurm)
    raise ConfigError(f"unknown engine {engine!r}; choose local, ray or submitit")
