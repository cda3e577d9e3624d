"""The table `rem-unlearn advise` reads (src/rem_unlearn/bench/advice.json), made from committed records only.

Per corruption kind and discovery rate of the default grid: every usable method's mean score over the seeds
that every method has (a comparison on equal seeds), from the first source that holds the method (tuned
settings before published ones); and per corruption kind the mean regularity `advise` measured on the dev
tasks (research/records/advise_dev.jsonl, made by research/experiments/advise_check.py --seeds 100).

    .venv/bin/python scripts/advice_table.py            # rewrite the table
    .venv/bin/python scripts/advice_table.py --check    # exit 1 if it differs from what the records give
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "src" / "rem_unlearn" / "bench" / "advice.json"
RECORDS = ROOT / "research" / "records"
# Sources in priority order; a method is read from the first group that holds it.
SOURCES = [["default-tuned", "default-tuned-s12"], ["default-tuned-rest"], ["default-defences"],
           ["default-alternatives"], ["default-published", "default-published-rest"]]
DEV = RECORDS / "advise_dev.jsonl"
ORACLES = {"rem-ideal", "etd"}  # not usable on a real task (every corrupted id; a capacity model's `none`)


def load(folder: Path) -> list[dict]:
    return [r for r in (json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json")))
            if r["status"] == "ok"]


def table() -> dict:
    from rem_unlearn.bench.tuning_file import load_tuning

    tunings = {"default": set(load_tuning("default")["methods"])}
    chosen: dict[str, tuple[list[str], list[dict]]] = {}  # method -> (its sources, its records)
    taken: set[tuple] = set()  # (method, corruption, rate, seed): a cell is read from the first source holding it
    for group in SOURCES:
        records = [r for name in group for r in load(RECORDS / name)]
        grids = {name: json.loads((RECORDS / name / "grid.json").read_text())["grid"] for name in group}
        tuned = {g.get("tuned") for g in grids.values()}
        for r in records:
            c = r["cell"]
            cell = (c["method"], c["corruption"], c["discovery_rate"], c["seed"])
            if c["method"] in ORACLES or cell in taken:
                continue
            taken.add(cell)
            settings = "published" if tuned - set(tunings) or c["method"] not in tunings.get(*tuned, ()) else \
                f"tuned={next(iter(tuned))}"
            sources, kept = chosen.setdefault(c["method"], ([], []))
            for entry in (*(f"research/records/{n}" for n in group), settings):
                if entry not in sources:
                    sources.append(entry)
            kept.append(r)
    seeds = set.intersection(*({r["cell"]["seed"] for r in recs} for _, recs in chosen.values()))
    cells: dict[str, dict[str, dict[str, dict]]] = {}
    for method, (_, records) in chosen.items():
        by_cell: dict[tuple[str, str], list[float]] = {}
        for r in records:
            if r["cell"]["seed"] in seeds:
                by_cell.setdefault((r["cell"]["corruption"], f"{r['cell']['discovery_rate']:g}"), []).append(
                    r["metrics"]["score"])
        for (kind, rate), scores in by_cell.items():
            sem = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0
            cells.setdefault(kind, {}).setdefault(rate, {})[method] = {
                "score": round(statistics.fmean(scores), 2), "sem": round(sem, 2), "n": len(scores)}
    dev = [json.loads(line) for line in DEV.read_text().splitlines()]
    regularity = {kind: round(statistics.fmean(r["regularity"]["value"] for r in dev if r["corruption"] == kind), 3)
                  for kind in sorted({r["corruption"] for r in dev})}
    return {"format": 1, "made_by": "scripts/advice_table.py",
            "source": {"experiment": "the default grid (embedded Fashion-MNIST, capacity ResNet-9)",
                       "seeds": sorted(seeds), "methods": {m: src for m, (src, _) in sorted(chosen.items())},
                       "regularity": f"mean over the dev tasks (seed 100) in {DEV.relative_to(ROOT)}"},
            "regularity": regularity,
            "cells": {k: {r: dict(sorted(v.items())) for r, v in sorted(rates.items(), key=lambda kv: float(kv[0]))}
                      for k, rates in sorted(cells.items())}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true")
    a = p.parse_args()
    text = json.dumps(table(), indent=1) + "\n"
    if a.check:
        if TABLE.read_text() != text:
            print(f"{TABLE.relative_to(ROOT)} differs from what the records give; run scripts/advice_table.py")
            return 1
        return 0
    TABLE.write_text(text)
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
