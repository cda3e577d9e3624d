"""Experiment tracking: TensorBoard or MLflow, optional, never required.

The JSON records (benchmark cells) and sidecars (``unlearn``) stay the source
of truth; a tracker is a view of them for people who compare runs in
TensorBoard or MLflow.  Each backend is an optional extra that is imported
only when asked for (``rem-unlearn[tensorboard]``, ``rem-unlearn[mlflow]``);
a missing one is a one-line :class:`~rem_unlearn.errors.MissingExtraError`.

* :class:`Tracker`: one run, ``log_params`` / ``log_metrics(step)`` / ``close``.
* :class:`RoundLogger`: the ``on_epoch`` observer of :func:`rem_unlearn.unlearn`:
  forget/retain accuracy in drop and shared mode after every round, then the
  proxy and the learning rate from the method's history.
* :func:`log_record`: one benchmark cell as one run, its resolved config
  flattened into parameters.

Local stores by default: TensorBoard event files under ``runs/``, MLflow a
SQLite file ``mlflow.db`` (MLflow 3 refuses its old ``./mlruns`` file store
unless told otherwise, and recommends SQLite).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .errors import require_extra
from .files import check_writable_folder
from .metrics import known_data_accuracy

TRACKERS = ("tensorboard", "mlflow")
EXPERIMENT = "rem-unlearn"


def default_log_dir(kind: str, base: str | Path = ".") -> Path:
    """Where a tracker writes when ``--log-dir`` is not given: ``base/runs`` or ``base/mlflow.db``."""
    return Path(base) / ("runs" if kind == "tensorboard" else "mlflow.db")


def check_tracker(kind: str | None, log_dir: str | Path | None) -> None:
    """Before any work: the backend's package is installed and its store can be written."""
    if kind is None:
        return
    if kind == "tensorboard":
        require_extra("torch.utils.tensorboard", "tensorboard", "--log tensorboard")
        check_writable_folder(log_dir, f"--log-dir {log_dir}")
    else:
        require_extra("mlflow", "mlflow", "--log mlflow")
        check_writable_folder(Path(log_dir).parent, f"--log-dir {log_dir}")


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``unlearn.optim.lr``); lists and None as text."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, default=str)
    return out


def finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are real numbers (None and NaN are left out: a tracker cannot plot them)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class Tracker:
    """One run of a tracking backend."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardTracker(Tracker):
    """Event files in ``log_dir/run_name``: scalars per step, the parameters as a text table and as
    HParams (so the HParams tab compares runs by their config and final metrics)."""

    def __init__(self, log_dir: str | Path, run_name: str):
        tb = require_extra("torch.utils.tensorboard", "tensorboard", "--log tensorboard")
        self.writer = tb.SummaryWriter(log_dir=str(Path(log_dir) / _safe(run_name)))
        self.params: dict[str, Any] = {}
        self.last: dict[str, float] = {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(flatten(params))
        table = "\n".join(["| parameter | value |", "|---|---|"] +
                          [f"| {k} | {v} |" for k, v in sorted(self.params.items())])
        self.writer.add_text("params", table)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        for key, value in finite(metrics).items():
            self.writer.add_scalar(key, value, step)
            self.last[key] = value

    def close(self) -> None:
        if self.params and self.last:
            from torch.utils.tensorboard.summary import hparams

            # The HParams tab shows each metric tag's last scalar value: the tags logged above.
            for summary in hparams(self.params, dict(self.last)):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()


_MLFLOW_CLIENTS: dict[str, Any] = {}


class MLflowTracker(Tracker):
    """One MLflow run in the experiment ``rem-unlearn`` of the SQLite store ``db`` (view it with
    ``mlflow ui --backend-store-uri sqlite:///DB``)."""

    def __init__(self, db: str | Path, run_name: str):
        require_extra("mlflow", "mlflow", "--log mlflow")
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)
        uri = f"sqlite:///{Path(db).resolve()}"
        if uri not in _MLFLOW_CLIENTS:  # a client per store: creating one migrates the database (seconds)
            _MLFLOW_CLIENTS[uri] = MlflowClient(tracking_uri=uri)
        self.client = client = _MLFLOW_CLIENTS[uri]
        experiment = client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        self.run_id = client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(flatten(params).items())]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in finite(metrics).items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_run(kind: str, log_dir: str | Path, run_name: str) -> Tracker:
    """A new run of ``kind`` (``tensorboard`` or ``mlflow``) in ``log_dir``."""
    if kind == "tensorboard":
        return TensorBoardTracker(log_dir, run_name)
    if kind == "mlflow":
        return MLflowTracker(log_dir, run_name)
    raise ValueError(f"unknown tracker {kind!r}; choose one of: {', '.join(TRACKERS)}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_") or "run"


def _step(label: str) -> int | None:
    """The round of an observer label: ``start`` is 0, ``round 3`` / ``epoch 3`` is 3."""
    if label == "start":
        return 0
    match = re.search(r"(\d+)\s*$", label)
    return int(match.group(1)) if match else None


class RoundLogger:
    """``on_epoch`` observer: forget/retain accuracy in drop and shared mode after every round.

    Drop mode is the model as it will be used (the redirection capacity off);
    shared mode is how REM fits the forget set (D_f through its shared mask).
    The observer only reads the model; selection never sees it.
    """

    def __init__(self, tracker: Tracker, batcher, forget_rows: torch.Tensor):
        self.tracker = tracker
        self.batcher = batcher
        self.forget_rows = torch.as_tensor(forget_rows)
        self.forget_ids = batcher.data.ids[self.forget_rows]

    def __call__(self, model: torch.nn.Module, label: str) -> None:
        step = _step(label)
        if step is None:
            return
        metrics = {}
        for mode in ("drop", "shared"):
            acc = known_data_accuracy(model, self.batcher, self.forget_rows, mode=mode, shared_ids=self.forget_ids)
            metrics.update({f"{k}/{mode}": v for k, v in acc.items()})
        self.tracker.log_metrics(metrics, step)

    def finish(self, history: list[dict], final: Mapping[str, Any] | None = None) -> None:
        """The method's own per-round rows (the selection proxy, the round's learning rate and steps), and
        ``final`` metrics of the returned model at the last round's step."""
        last = 0
        for row in history:
            event = row.get("event")
            if event == "proxy":
                step, keys = _step(str(row.get("at", ""))), ("keeping", "removing", "proxy")
            elif event == "round":
                step, keys = row.get("round"), ("lr", "steps", "flush_steps")
            else:
                continue
            if step is not None:
                self.tracker.log_metrics({f"{event}/{k}": row[k] for k in keys if k in row}, int(step))
                last = max(last, int(step))
        if final:
            self.tracker.log_metrics(final, last)


@contextlib.contextmanager
def tracked(kind: str | None, log_dir: str | Path | None, run_name: str, params: Mapping[str, Any], batcher,
            forget_rows: torch.Tensor) -> Iterator[RoundLogger | None]:
    """A run for one unlearning and its ``on_epoch`` observer; ``None`` (and nothing logged) without ``kind``.

    The run name gets the start time, so a second command never adds its curves to the first one's run.
    """
    if kind is None:
        yield None
        return
    with open_run(kind, log_dir, f"{run_name}_{time.strftime('%Y%m%d-%H%M%S')}") as run:
        run.log_params(params)
        yield RoundLogger(run, batcher, forget_rows)


def log_record(kind: str, log_dir: str | Path, record: Mapping[str, Any]) -> None:
    """One finished benchmark cell as one run: its resolved config as parameters, its metrics at step 0."""
    if record.get("status") != "ok":
        return
    cell = record.get("cell") or {}
    name = "_".join(str(cell.get(k)) for k in ("method", "variant", "corruption", "discovery_rate", "seed"))
    with open_run(kind, log_dir, f"{name}_{record.get('key')}") as run:
        run.log_params({"cell": cell, "config": record.get("config") or {}, "command": record.get("command"),
                        "commit": record.get("commit"), "versions": record.get("versions") or {}})
        run.log_metrics({**(record.get("metrics") or {}), "wall_time_s": record.get("wall_time_s")}, 0)


def add_tracking_args(p: argparse.ArgumentParser, default: str) -> None:
    """The ``--log``/``--log-dir`` options of ``unlearn`` and ``bench`` (``default``: where runs go)."""
    g = p.add_argument_group("experiment tracking (optional extras; the JSON records stay the source of truth)")
    g.add_argument("--log", choices=TRACKERS, help="also log to TensorBoard (rem-unlearn[tensorboard]) or MLflow "
                                                  "(rem-unlearn[mlflow])")
    g.add_argument("--log-dir", help=f"the tracker's local store (default: {default})")
