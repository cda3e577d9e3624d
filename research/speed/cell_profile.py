"""Where one benchmark cell's time goes: training steps, evaluation, proxy selection, model copies.

Runs single cells of a grid preset in this process under cProfile (the trained
model is loaded first, outside the profile) and prints, per cell, the seconds
spent in each part and its share of the cell.  The parts are cumulative times
of the functions named in PARTS; they do not overlap except that a model copy
made by the selector is counted under "model copies" and not under selection.

    .venv/bin/python research/speed/cell_profile.py --preset faithful --cells rem:poison:0.1:capacity
    .venv/bin/python research/speed/cell_profile.py --cells bad-teacher:random:1.0:etd,scrub:random:1.0:etd
"""

from __future__ import annotations

import argparse
import cProfile
import copy
import pstats

import torch

from rem_unlearn import training
from rem_unlearn.bench.cell import get_task, run_cell
from rem_unlearn.bench.grid import expand, load_grid
from rem_unlearn.methods.base import ProxySelector
from rem_unlearn.metrics import Evaluator

#: (part, the function whose cumulative time it is)
PARTS = [
    ("training steps", training.run_epoch),
    ("evaluation (metrics of the result)", Evaluator.__call__),
    ("proxy selection (known-data accuracy)", ProxySelector.proxy),
    ("model copies", copy.deepcopy),
]


def cumulative(stats: pstats.Stats, fn) -> float:
    code = fn.__code__
    key = (code.co_filename, code.co_firstlineno, code.co_name)
    entry = stats.stats.get(key)  # type: ignore[attr-defined]
    return entry[3] if entry else 0.0  # (calls, primitive calls, own time, cumulative time, callers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="faithful")
    p.add_argument("--cells", default="rem:poison:0.1:capacity", help="method:corruption:rate:variant, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    cells = expand(load_grid(a.preset, overrides=[f"seeds=[{a.seed}]"]))
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| cell | cell (s) | " + " | ".join(name for name, _ in PARTS) + " | other |")
    print("|---|---:|" + "---:|" * (len(PARTS) + 1))
    for spec in a.cells.split(","):
        method, corruption, rate, variant = spec.split(":")
        matches = [c for c in cells if (c.method, c.corruption, c.discovery_rate, c.variant)
                   == (method, corruption, float(rate), variant) and not c.detected]
        if not matches:
            raise SystemExit(f"no cell {spec} in preset {a.preset}")
        cell = matches[0]
        get_task(cell.experiment)  # load (or train) the model outside the profile
        profiler = cProfile.Profile()
        profiler.enable()
        record = run_cell(cell)
        profiler.disable()
        if record["status"] != "ok":
            raise SystemExit(record["error"])
        stats = pstats.Stats(profiler)
        total = record["cell_seconds"]
        parts = [cumulative(stats, fn) for _, fn in PARTS]
        # the selector's deep copies happen inside ProxySelector.consider, not inside proxy(): no overlap
        other = total - sum(parts)
        cols = " | ".join(f"{s:.1f} ({100 * s / total:.0f} %)" for s in parts)
        print(f"| {spec} | {total:.1f} | {cols} | {other:.1f} ({100 * other / total:.0f} %) |", flush=True)


if __name__ == "__main__":
    main()
