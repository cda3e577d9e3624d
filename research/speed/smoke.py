"""The smoke grid scored on the whole test split against 1,000 of its images (``data.test_size``, the preset's).

Why the smoke preset scores on 1,000 test images: its models are tiny (600 training images, width 0.125), so
scoring 10,000 test images after every cell was about half of the grid's time. Each run starts from a cold
model cache, in one process at one thread, and the two settings alternate.

    .venv/bin/python research/speed/smoke.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def smoke_seconds(test_size: int | None) -> float:
    """Seconds of one cold run of the smoke grid with ``data.test_size`` = ``test_size``."""
    from rem_unlearn.bench import GridConfig, grid_preset, run_grid
    from rem_unlearn.config import load_config

    with tempfile.TemporaryDirectory() as folder:
        data = grid_preset("smoke")
        data["experiment_overrides"]["data"]["test_size"] = test_size
        data["experiment_overrides"]["runtime"] = {"cache_dir": str(Path(folder) / "cache")}
        grid = load_config(GridConfig, base=data)
        start = time.perf_counter()
        run_grid(grid, Path(folder) / "results", quiet=True)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    os.environ["REM_UNLEARN_QUIET"] = "1"
    torch.set_num_threads(1)
    runs: dict[str, list[float]] = {"whole test split": [], "test_size=1000": []}
    for _ in range(a.repeats):
        runs["whole test split"].append(smoke_seconds(None))
        runs["test_size=1000"].append(smoke_seconds(1000))
    for name, seconds in runs.items():
        print(f"{name:>16}: {', '.join(f'{s:.1f} s' for s in seconds)}")
    ratio = min(runs["whole test split"]) / min(runs["test_size=1000"])
    print(f"the smoke grid scored on 1,000 test images runs {ratio:.2f}x as fast (best of {a.repeats})")


if __name__ == "__main__":
    main()
