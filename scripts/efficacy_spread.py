"""Measure the efficacy task (tests/efficacy.py) under several CPU numerics and write the bands its tests use.

Another CPU rounds the bf16 and fp32 kernels differently, and a smoke-sized task amplifies it.  This
script runs the task once per numerics configuration -- the autocast precision, oneDNN's instruction set
capped with ``ONEDNN_MAX_CPU_ISA``, and 1 or 2 threads -- prints the spread of every metric, and writes
tests/data/efficacy_bands.json: per precision, corruption, method and metric, the lowest and highest value
seen, widened by ``--margin`` points on each side.  The test reads the bands of the precision that
``runtime.precision=auto`` gives on its machine: bf16 on a CPU with AVX512-BF16 or AMX, fp32 on one
without.  Run it after a change meant to move results, and commit the file with the change:

    .venv/bin/python scripts/efficacy_spread.py --rerun      # every configuration; without native bf16 bf16 is slow
    .venv/bin/python scripts/efficacy_spread.py --configs fp32:AVX2:1,fp32:AVX2:2   # add or remeasure some
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
# precision : oneDNN ISA cap : threads [: ATen capability].  ATen "default" with AVX is a CPU without AVX2.
CONFIGS = ("bf16:AVX512_CORE_AMX:2", "bf16:AVX512_CORE_AMX:1", "bf16:AVX512_CORE:1",
           "fp32:AVX2:1", "fp32:AVX2:2", "fp32:AVX:2", "fp32:AVX:1:default", "fp32:SSE41:1:default")


def run(precision: str, isa: str, threads: int, aten: str | None = None) -> dict:
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa, "OMP_NUM_THREADS": str(threads), "REM_UNLEARN_QUIET": "1"}
    if aten:  # ATen's own kernels (activations, BatchNorm, the optimiser) at another instruction set
        env["ATEN_CPU_CAPABILITY"] = aten
    code = f"import json, efficacy; print(json.dumps(efficacy.measure(precision={precision!r})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "tests", env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), help="precision:ISA:threads[:ATen capability], "
                   "comma-separated (e.g. fp32:AVX:1:default, a CPU with AVX but not AVX2)")
    p.add_argument("--margin", type=float, default=3.0, help="points added below and above the spread")
    p.add_argument("--rerun", action="store_true", help="measure every configuration again (after a change meant "
                   "to move results); otherwise those already in the bands file are kept")
    p.add_argument("--table", action="store_true", help="print the measured runs and their spread; run nothing")
    a = p.parse_args()
    if a.table:
        return print(table(json.loads(OUT.read_text())["runs"]))
    saved = json.loads(OUT.read_text()).get("runs", {}) if OUT.is_file() else {}
    runs = {} if a.rerun else dict(saved)  # without --rerun, every configuration measured before is kept
    for spec in a.configs.split(","):
        if spec in runs:
            continue
        precision, isa, threads, *aten = spec.split(":")
        start = time.perf_counter()
        runs[spec] = run(precision, isa, int(threads), *aten)
        print(f"{spec}: {time.perf_counter() - start:.0f} s {json.dumps(runs[spec])}", flush=True)
        write(runs, bands_of(runs, a.margin), a.margin)  # each configuration is kept as soon as it is measured
    write(runs, bands_of(runs, a.margin), a.margin)
    print(table(runs))
    print(f"wrote {OUT}")


def by_precision(runs: dict) -> dict:
    """{precision: {spec: run}}: the runs of each autocast, in the order they were measured."""
    groups: dict = {}
    for spec, run_ in runs.items():
        groups.setdefault(spec.split(":")[0], {})[spec] = run_
    return groups


def bands_of(runs: dict, margin: float) -> dict:
    """{precision: {corruption: {method: {metric: [low, high]}}}}: the spread of each precision's runs, widened."""
    bands: dict = {}
    for precision, own in by_precision(runs).items():
        for kind, method, metric, lo, hi in spread(own):
            bands.setdefault(precision, {}).setdefault(kind, {}).setdefault(method, {})[metric] = [
                round(max(0.0, lo - margin), 2), round(min(100.0, hi + margin), 2)]
    return bands


def spread(runs: dict):
    """(corruption, method, metric, lowest, highest) over the configurations."""
    first = next(iter(runs.values()))
    for kind, methods in first.items():
        for method, metrics in methods.items():
            for metric in metrics:
                seen = [r[kind][method][metric] for r in runs.values()]
                yield kind, method, metric, min(seen), max(seen)


def table(runs: dict) -> str:
    """Score, healed and attack success per configuration, and each precision's spread, as markdown."""
    configs = list(runs)
    groups = by_precision(runs)
    spreads = {p: {(k, m, x): hi - lo for k, m, x, lo, hi in spread(own)} for p, own in groups.items()}
    lines = ["| corruption | method | metric | " + " | ".join(configs) + " | "
             + " | ".join(f"{p} spread" for p in groups) + " |",
             "|---|---|---|" + "---:|" * (len(configs) + len(groups))]
    for kind, method, metric, _, _ in spread(runs):
        if metric in ("score", "attack_success", "healed"):
            values = " | ".join(f"{runs[c][kind][method][metric]:.1f}" for c in configs)
            widths = " | ".join(f"{spreads[p][kind, method, metric]:.1f}" for p in groups)
            lines.append(f"| {kind} | {method} | {metric} | {values} | {widths} |")
    return "\n".join(lines)


def write(runs: dict, bands: dict, margin: float) -> None:
    OUT.write_text(json.dumps({"configs": list(runs), "margin": margin, "runs": runs, "bands": bands},
                              indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
