"""Measure the efficacy task (tests/efficacy.py) under several CPU numerics and write the bands its tests use.

Another CPU rounds the bf16 and fp32 kernels differently, and a smoke-sized task amplifies it.  This
script runs the task once per numerics configuration -- oneDNN's instruction set capped with
``ONEDNN_MAX_CPU_ISA`` and 1 or 2 threads -- prints the spread of every metric, and writes
tests/data/efficacy_bands.json: per corruption, method and metric, the lowest and highest value seen,
widened by ``--margin`` points on each side.  Run it after a change meant to move results, and commit
the file with the change:

    .venv/bin/python scripts/efficacy_spread.py --rerun      # 4 configurations; without AVX512-BF16 bf16 is slow
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "efficacy_bands.json"
CONFIGS = ("AVX512_CORE_AMX:2", "AVX512_CORE:2", "AVX2:2", "AVX512_CORE_AMX:1")  # ISA cap : threads


def run(isa: str, threads: int) -> dict:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "OMP_NUM_THREADS": str(threads), "REM_UNLEARN_QUIET": "1"}
    code = "import json, efficacy; print(json.dumps(efficacy.measure()))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help="ISA:threads, comma-separated")
    p.add_argument("--margin", type=float, default=3.0, help="points added below and above the spread")
    p.add_argument("--rerun", action="store_true", help="measure every configuration again (after a change meant "
                   "to move results); otherwise those already in the bands file are kept")
    p.add_argument("--table", action="store_true", help="print the measured runs and their spread; run nothing")
    a = p.parse_args()
    if a.table:
        return print(table(json.loads(OUT.read_text())["runs"]))
    saved = json.loads(OUT.read_text()).get("runs", {}) if OUT.is_file() else {}
    runs = {}
    for spec in a.configs.split(","):
        if spec in saved and not a.rerun:  # measured before with this code: kept
            runs[spec] = saved[spec]
            continue
        isa, threads = spec.split(":")
        start = time.perf_counter()
        runs[spec] = run(isa, int(threads))
        print(f"{spec}: {time.perf_counter() - start:.0f} s {json.dumps(runs[spec])}", flush=True)
        write(runs, {}, a.margin)  # each configuration is kept as soon as it is measured
    bands: dict = {}
    for kind, method, metric, lo, hi in spread(runs):
        bands.setdefault(kind, {}).setdefault(method, {})[metric] = [round(max(0.0, lo - a.margin), 2),
                                                                     round(min(100.0, hi + a.margin), 2)]
    write(runs, bands, a.margin)
    print(table(runs))
    print(f"wrote {OUT}")


def spread(runs: dict):
    """(corruption, method, metric, lowest, highest) over the configurations."""
    first = next(iter(runs.values()))
    for kind, methods in first.items():
        for method, metrics in methods.items():
            for metric in metrics:
                seen = [r[kind][method][metric] for r in runs.values()]
                yield kind, method, metric, min(seen), max(seen)


def table(runs: dict) -> str:
    """Score and attack success per configuration, and the spread, as markdown."""
    configs = list(runs)
    lines = ["| corruption | method | metric | " + " | ".join(configs) + " | spread |",
             "|---|---|---|" + "---:|" * (len(configs) + 1)]
    for kind, method, metric, lo, hi in spread(runs):
        if metric in ("score", "attack_success", "healed"):
            values = " | ".join(f"{runs[c][kind][method][metric]:.1f}" for c in configs)
            lines.append(f"| {kind} | {method} | {metric} | {values} | {hi - lo:.1f} |")
    return "\n".join(lines)


def write(runs: dict, bands: dict, margin: float) -> None:
    OUT.write_text(json.dumps({"configs": list(runs), "margin": margin, "runs": runs, "bands": bands},
                              indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
