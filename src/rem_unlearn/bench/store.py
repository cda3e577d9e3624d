"""The results folder: one JSON record per cell, written atomically, plus the grid that made them.

Layout::

    RESULTS/grid.json              the grid config, its grid_id and BENCH_FORMAT (seeds: every seed run here)
    RESULTS/records/<key>.json     one record per finished cell (status "ok" or "failed")
    RESULTS/records/<key>.json.corrupt-N   unreadable records moved aside (never read again)
    RESULTS/.lock                  held (shared) by every sweep running here
    RESULTS/.claims/<key>.lock     held by the sweep running that cell

A record is only ever written whole (temp file + fsync + ``os.replace``), so
killing a sweep loses at most the cells in flight; anything unreadable found
later (a truncated copy, a foreign file) is moved aside and its cell redone.
Two sweeps over one folder share it: each claims a cell (a non-blocking
``fcntl.flock``) before running it and skips cells the other holds or has
finished.  A killed sweep's claims vanish with its process.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..checkpoint import versions
from ..config import ConfigError
from ..experiment import precision_key
from ..files import FileLock, PathError, atomic_write_json, check_writable_folder, remove_temp_files
from ..report.records import record_problem
from .grid import BENCH_FORMAT, GridConfig, grid_dict, grid_id, grid_runtime

log = logging.getLogger(__name__)

class GridMismatchError(ConfigError):
    """The results folder was made by another grid or another benchmark format."""


class ResultStore:
    """Records of one results folder."""

    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.records_dir = self.root / "records"
        self.grid_path = self.root / "grid.json"
        self.claims_dir = self.root / ".claims"

    def check_writable(self) -> None:
        """A results folder that is a file or lies where nothing can be written is refused before any work."""
        for path in (self.root, self.records_dir):
            if path.exists() and not path.is_dir():
                raise PathError(f"results folder: {path} is not a folder")
        check_writable_folder(self.root, f"results folder {self.root}")

    def path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    # ------------------------------------------------------------------ writing

    def write(self, record: dict[str, Any]) -> Path:
        """Write one record atomically (a reader sees the old file or the whole new one)."""
        problem = record_problem(record)
        if problem:
            raise ValueError(f"refusing to write an invalid record ({problem})")
        path = self.path(record["key"])
        atomic_write_json(path, record)
        return path

    def write_grid(self, grid: GridConfig) -> None:
        """Record the grid; seeds accumulate (the seeds run here before plus this sweep's)."""
        data = grid_dict(grid)
        saved = self.saved_grid()
        if saved is not None and saved.get("grid_id") == grid_id(grid):
            data["seeds"] = sorted(set(saved["grid"].get("seeds", [])) | set(data["seeds"]))
        from .tuning_file import settings_note

        methods = sorted({m for ms in [grid.methods, *grid.variant_methods.values()] for m in ms})
        note = settings_note(grid.tuned, grid.tuning() if grid.tuned else None, methods)
        atomic_write_json(self.grid_path, {"bench_format": BENCH_FORMAT, "grid_id": grid_id(grid), "grid": data,
                                           "precision": precision_key(grid_runtime(grid)), "settings": note,
                                           "versions": versions(),
                                           "written": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def saved_grid(self) -> dict[str, Any] | None:
        """grid.json when it is readable and of this benchmark format."""
        try:
            saved = json.loads(self.grid_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        ok = isinstance(saved, dict) and saved.get("bench_format") == BENCH_FORMAT and "grid_id" in saved
        return saved if ok else None

    @contextmanager
    def sweep(self) -> Iterator[None]:
        """Hold the folder for one sweep; a sweep alone in it also removes what killed writers left behind."""
        self.records_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".lock")
        self._clean_if_alone(lock)
        lock.acquire(shared=True)
        try:
            yield
        finally:
            lock.release()
            self._clean_if_alone(lock)

    def _clean_if_alone(self, lock: FileLock) -> None:
        if lock.acquire(blocking=False):  # exclusive: no other sweep is running here
            try:
                remove_temp_files(self.records_dir)
                shutil.rmtree(self.claims_dir, ignore_errors=True)
            finally:
                lock.release()

    def claim(self, key: str) -> FileLock | None:
        """The claim on cell ``key``, or None when another sweep holds it (release it once the record is written)."""
        lock = FileLock(self.claims_dir / f"{key}.lock")
        return lock if lock.acquire(blocking=False) else None

    # ------------------------------------------------------------------ reading

    def _move_aside(self, path: Path, why: str) -> None:
        n = 0
        while (target := path.with_name(f"{path.name}.corrupt-{n}")).exists():
            n += 1
        log.warning("record %s is not usable (%s); moved to %s, its cell will be redone", path.name, why,
                    target.name)
        path.replace(target)

    def read(self, key: str) -> dict[str, Any] | None:
        """The valid record of ``key``, or ``None`` (missing, or moved aside when unusable)."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self._move_aside(path, f"unreadable: {exc}")
            return None
        if isinstance(record, dict) and record.get("bench_format", BENCH_FORMAT) != BENCH_FORMAT:
            return None  # another format's record: ignored, never mixed in, never deleted
        problem = record_problem(record, key)
        if problem:
            self._move_aside(path, problem)
            return None
        return record

    def scan(self) -> dict[str, dict[str, Any]]:
        """Every valid record of the folder by key; unusable ones are moved aside."""
        out: dict[str, dict[str, Any]] = {}
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.glob("*.json")):
            record = self.read(path.stem)
            if record is not None:
                out[path.stem] = record
        return out

    @staticmethod
    def is_done(record: dict[str, Any], retry_failed: bool = False) -> bool:
        """A valid record ends its cell: ``ok``, or ``failed`` unless ``retry_failed``."""
        return record["status"] == "ok" or not retry_failed

    def done_keys(self, retry_failed: bool = False) -> set[str]:
        """Keys of complete records: ``ok`` ones, and ``failed`` ones unless ``retry_failed``."""
        return {k for k, r in self.scan().items() if self.is_done(r, retry_failed)}

    def records(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """The valid records of ``keys`` (in that order); missing ones are left out."""
        return [r for r in (self.read(k) for k in keys) if r is not None]

    # ------------------------------------------------------------------ the grid

    def check_grid(self, grid: GridConfig, force: bool = False) -> None:
        """Refuse a folder made by another grid or benchmark format, unless ``force``.

        With ``force`` the folder is reused: records whose key belongs to the
        current grid are kept (keys hash the full resolved config, so they are
        safe to reuse), every other record is ignored and left out of the report.
        """
        problems: list[str] = []
        if self.grid_path.exists():
            try:
                saved = json.loads(self.grid_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                saved = None
                problems.append(f"its grid.json is unreadable ({exc})")
            if isinstance(saved, dict):
                if saved.get("bench_format") != BENCH_FORMAT:
                    problems.append(f"it was made with benchmark format {saved.get('bench_format')!r}, "
                                    f"this is format {BENCH_FORMAT}")
                else:  # seeds may differ: a folder accumulates seeds run one invocation at a time
                    old, new = saved.get("grid") or {}, grid_dict(grid)
                    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k != "seeds")
                    if changed:
                        problems.append(f"it was made by a different grid (differs in: {', '.join(changed)})")
                    # Made before grid.json kept it: runtime.precision as configured, auto then being bf16.
                    runtime = grid_runtime(grid)
                    made, here = saved.get("precision", runtime.precision), precision_key(runtime)
                    if not changed and made != here:
                        name = {"auto": "bf16 (auto)"}
                        problems.append(f"its cells ran in {name.get(made, made)} autocast, here they run in "
                                        f"{name.get(here, here)}: runtime.precision=auto is bf16 only on a CPU with "
                                        "native bf16")
            elif saved is not None:
                problems.append("its grid.json is not a JSON object")
        elif self.records_dir.is_dir():  # no grid.json (it is the authority once written): look at the records
            formats = set()
            for path in self.records_dir.glob("*.json"):
                try:
                    fmt = json.loads(path.read_text(encoding="utf-8")).get("bench_format")
                except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                    continue  # unreadable records are moved aside and redone later
                if fmt != BENCH_FORMAT:
                    formats.add(repr(fmt))
            if formats:
                problems.append(f"it holds records of benchmark format {', '.join(sorted(formats))}, "
                                f"this is format {BENCH_FORMAT}")
        if problems and not force:
            raise GridMismatchError(
                f"results folder {self.root} cannot be reused: {'; '.join(problems)}. Use a new folder "
                "(--results DIR) or --force to reuse it (records of other grids or formats are then ignored, "
                "not mixed into the report).")
        if problems:
            log.warning("--force: reusing %s although %s; only records of the current grid are used",
                        self.root, "; ".join(problems))
