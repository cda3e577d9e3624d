"""Run the `pinned` grid and record its metrics for this machine in tests/data/pinned_metrics.json.

Run it after a change that is meant to change results, on every kind of machine whose pins the file
holds, and commit the file with that change:

    .venv/bin/python scripts/pin_results.py

Two runs on the same machine with the same thread count give identical metrics (bit for bit). Another
CPU changes the rounding of the bf16 and fp32 kernels, and the smoke-sized grid amplifies it: the same
commit measured up to 6 points of utility apart on two CPUs (research/notes/results.md, "What reproduces").  So
the metrics are pinned per *numerics*: a hash of a few training steps run the way the grid runs them
(:func:`numerics_fingerprint`).  tests/test_pinned.py compares against the pins of the machine's own
numerics, and skips, naming the fingerprint, on a machine that has none yet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

from rem_unlearn.bench import load_grid, run_grid
from rem_unlearn.bench.grid import experiment_config
from rem_unlearn.models import build_model
from rem_unlearn.training import Runtime

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pinned_metrics.json"
PINNED = ("healed", "utility", "score")
#: Absolute tolerances in percentage points, for what can still differ between machines of the same
#: numerics (none was seen): the smoke data has 30 corrupted samples (one = 3.3 points) and a 10,000-image
#: test set.
TOLERANCE = {"healed": 10.0, "utility": 2.0, "score": 10.0}


def numerics_fingerprint(precision: str | None = None) -> str:
    """A hash of three SGD steps of the pinned grid's model on a fixed batch, with the grid's runtime (its
    precision unless ``precision`` is given) and this process's thread count.  Machines that agree on it
    run the same kernels with the same rounding."""
    grid = load_grid("pinned")
    cfg = experiment_config(grid.base_experiment(), grid.corruptions[0], grid.variants[0], 0, grid.device)
    runtime = Runtime.from_config(dataclasses.replace(cfg.runtime, precision=precision or cfg.runtime.precision))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = runtime.prepare(build_model(cfg.model, 1, 10, 28)).train()  # Fashion-MNIST's shape and classes
        x = torch.randn(32, 1, 28, 28).to(runtime.device)
        y = torch.randint(0, 10, (32,)).to(runtime.device)
    if runtime.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        with runtime.autocast():
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    h = hashlib.sha256(f"threads={torch.get_num_threads()}".encode())  # the weights tell the precisions apart
    for p in model.parameters():
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cell_name(cell: dict) -> str:
    return f"{cell['method']}/{cell['variant']}/{cell['corruption']}/{cell['discovery_rate']:g}/{cell['seed']}"


def pinned_metrics(results: Path, cache: Path) -> dict[str, dict[str, float]]:
    grid = load_grid("pinned", overrides=[f"experiment_overrides.runtime.cache_dir={cache}"])
    records = run_grid(grid, results, quiet=True)
    bad = [r for r in records if r["status"] != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} pinned cell(s) failed:\n{bad[0]['error']}")
    return {cell_name(r["cell"]): {m: round(r["metrics"][m], 4) for m in PINNED} for r in records}


def main() -> None:
    machine = numerics_fingerprint()
    with tempfile.TemporaryDirectory() as tmp:
        cells = pinned_metrics(Path(tmp) / "results", Path(tmp) / "cache")
    pins = json.loads(OUT.read_text()) if OUT.exists() else {}
    machines = pins.get("machines", {})
    machines[machine] = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                         "machine": platform.machine(), "torch": torch.__version__, "cells": cells}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"grid": "pinned", "tolerance": TOLERANCE, "machines": machines},
                              indent=2, sort_keys=True) + "\n")
    print(f"{len(cells)} cells pinned for numerics {machine} in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
