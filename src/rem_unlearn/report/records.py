"""The benchmark's record format, and the one reader of a results folder.

A record is the JSON outcome of one cell (method x corruption x discovery rate x
seed x variant).  The result store (``rem_unlearn.bench.store``) validates every
record with :func:`record_problem` before writing it; the report reads a folder
with :func:`load_records`, which keeps exactly the records of the grid the folder
holds: ``grid.json`` names the grid by ``grid_id`` (a hash of the grid without its
seeds, so that seeds run one invocation at a time accumulate in one folder), and
every record carries the ``grid_id`` of the sweep that wrote or reused it.
Records of other grids (left by ``bench --force``) or of another benchmark format
are never mixed in.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..metrics import METRIC_NAMES

log = logging.getLogger(__name__)

RECORD_SCHEMA = 1
CELL_FIELDS = ("dataset", "variant", "corruption", "seed", "discovery_rate", "method")


def record_problem(record: Any, key: str | None = None) -> str | None:
    """Why ``record`` is not a complete, valid record (``None`` when it is)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("schema") != RECORD_SCHEMA:
        return f"schema {record.get('schema')!r}, expected {RECORD_SCHEMA}"
    if key is not None and record.get("key") != key:
        return f"key {record.get('key')!r} does not match the file name"
    cell = record.get("cell")
    if not isinstance(cell, dict) or any(f not in cell for f in CELL_FIELDS):
        return "cell fields missing"
    status = record.get("status")
    if status == "ok":
        metrics = record.get("metrics")
        if not isinstance(metrics, dict):
            return "status ok without metrics"
        missing = [m for m in METRIC_NAMES if m not in metrics]
        if missing:
            return f"metrics missing: {', '.join(missing)}"
        if not isinstance(record.get("wall_time_s"), (int, float)):
            return "status ok without wall_time_s"
    elif status == "failed":
        if not record.get("error"):
            return "status failed without an error"
    else:
        return f"status {status!r} is neither ok nor failed"
    return None


def read_json(path: Path) -> Any:
    """The JSON content of ``path``, or ``None`` when it cannot be read (logged)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("skipping unreadable %s: %s", path, exc)
        return None


def folder_grid(results_dir: str | Path) -> dict[str, Any] | None:
    """The content of ``results_dir/grid.json`` (``bench_format``, ``grid_id``, ``grid``), if any."""
    path = Path(results_dir) / "grid.json"
    saved = read_json(path) if path.exists() else None
    return saved if isinstance(saved, dict) else None


def load_records(results_dir: str | Path) -> list[dict[str, Any]]:
    """The valid records of the grid ``results_dir`` holds, every seed run into it so far.

    Without a ``grid.json`` (records copied by hand) every valid record is read.
    Invalid or foreign files are skipped with a warning, never fatal.
    """
    root = Path(results_dir)
    grid = folder_grid(root)
    records: list[dict[str, Any]] = []
    for path in sorted((root / "records").glob("*.json")):
        record = read_json(path)
        problem = record_problem(record, path.stem)
        if problem:
            log.warning("skipping %s: not a valid benchmark record (%s)", path, problem)
            continue
        if grid is not None and (record.get("bench_format") != grid.get("bench_format")
                                 or record.get("grid_id") != grid.get("grid_id")):
            continue  # another grid's or format's record: never mixed in
        records.append(record)
    return records
