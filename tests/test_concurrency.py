"""Two ``bench`` processes at once into one results folder, sharing one model cache.

Each process runs the real command through a small driver that appends a line
to a counter file whenever a model checkpoint is written or a cell starts
(and sleeps a little there, so the two processes really overlap).  Every
model must be written once, every cell run once, and no cell may fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import rem_unlearn

DRIVER = textwrap.dedent("""
    import os, sys, time
    import rem_unlearn.experiment as experiment
    from rem_unlearn.bench import cell as bench_cell

    counter = sys.argv[1]

    def log(line):
        with open(counter, "a") as f:
            f.write(line + "\\n")

    real_save, real_run = experiment.save_checkpoint, bench_cell.run_cell

    def save_checkpoint(model, path, meta):
        time.sleep(1.0)  # a slow save: the other process is sure to want this model meanwhile
        log(f"model {os.getpid()} {path}")
        return real_save(model, path, meta)

    def run_cell(cell, verify=False):
        log(f"cell {os.getpid()} {cell.key}")
        time.sleep(0.3)
        return real_run(cell, verify)

    experiment.save_checkpoint, bench_cell.run_cell = save_checkpoint, run_cell
    from rem_unlearn.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_two_concurrent_sweeps_share_one_folder_and_cache(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    counter, results, cache = tmp_path / "counter.txt", tmp_path / "results", tmp_path / "cache"
    argv = ["bench", "--preset", "smoke", "--results", str(results), "--quiet",
            "corruptions=[random,poison]", "discovery_rates=[0.5,1.0]", "methods=[none,ga]",
            f"experiment_overrides.runtime.cache_dir={cache}"]
    env = {**os.environ, "PYTHONPATH": str(Path(rem_unlearn.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1", "REM_UNLEARN_QUIET": "1"}
    procs = [subprocess.Popen([sys.executable, str(driver), str(counter), *argv], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "8 records (0 failed)" in out, out

    events = [line.split() for line in counter.read_text().splitlines()]
    models = Counter(path for kind, _, path in events if kind == "model")
    cells = Counter(key for kind, _, key in events if kind == "cell")
    assert len(models) == 2 and set(models.values()) == {1}, models  # each model trained once
    assert len(cells) == 8 and set(cells.values()) == {1}, cells  # each cell run once, by one of the two

    records = [json.loads(p.read_text()) for p in (results / "records").glob("*.json")]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    assert not list(results.rglob("*.tmp")) and not list(cache.rglob("*.tmp"))
    assert not (results / ".claims").exists()  # the last sweep out cleans the claims
