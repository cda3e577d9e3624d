"""The benchmark: every method over the discovery x regularity space, resumable, in parallel, on Ray at scale.

``run_grid(load_grid("smoke"), "results/smoke")`` runs a grid preset into a
results folder and builds its report; ``rem-unlearn bench`` is the command.
"""

from __future__ import annotations

from .engines import EngineUnavailableError, LocalEngine, RayEngine, make_engine
from .grid import (BENCH_FORMAT, GRID_PRESETS, REM_ABLATIONS, Cell, GridConfig, cell_key, expand, grid_preset,
                   load_grid)
from .cell import run_cell
from .runner import pretrain_all, run_grid
from ..report.records import record_problem
from .store import GridMismatchError, ResultStore

__all__ = ["BENCH_FORMAT", "GRID_PRESETS", "REM_ABLATIONS", "Cell", "GridConfig", "cell_key", "expand",
           "grid_preset", "load_grid", "run_cell", "run_grid", "pretrain_all", "ResultStore", "GridMismatchError",
           "record_problem", "LocalEngine", "RayEngine", "EngineUnavailableError", "make_engine"]
