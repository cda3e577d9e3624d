"""REM's paired lead over every tuned method, per corruption kind, over every seed of one or more results folders.

    .venv/bin/python research/experiments/tuned_leads.py research/records/default-tuned \\
        research/records/default-tuned-s12

A cell is (corruption, discovery rate, seed); REM (on the capacity model) and the method are paired on it. Rows
carry the paper's names, a method on the ETD model its own row (`NPO (ETD)` in the `faithful` grid).
The interval is the mean paired difference ± 1.96 standard errors over the cells (a t-interval would be wider
with 9 cells: × 1.17).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict

from rem_unlearn.report import load_records
from rem_unlearn.report.heatmaps import REGULARITY
from rem_unlearn.report.tables import is_ok, paper_label

CORRUPTIONS = tuple(c for c, _ in REGULARITY)
REM, TRAINED = paper_label("rem", "capacity"), paper_label("none", "capacity")


def cell_scores(folders: list[str], variant: str | None = None,
                seeds: list[int] | None = None) -> dict[str, dict[tuple, float]]:
    """row (the method's paper label, which names the ETD variant) -> (corruption, rate, seed) -> score."""
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for folder in folders:
        for r in load_records(folder):
            if is_ok(r) and variant in (None, r["cell"]["variant"]) and (
                    seeds is None or r["cell"]["seed"] in seeds):
                c = r["cell"]
                cell = (c["corruption"], c["discovery_rate"], c["seed"])
                out[paper_label(c["method"], c["variant"])][cell] = r["metrics"]["score"]
    return out


def interval(diffs: list[float]) -> str:
    if len(diffs) < 2:
        return "–"
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{statistics.mean(diffs):+.1f} ± {half:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--variant", help="only the cells of this model variant (capacity, etd)")
    p.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")],
                   help="only the cells of these seeds (comma-separated): the seeds a table reports in full")
    a = p.parse_args()
    scores = cell_scores(a.folders, a.variant, a.seeds)
    rem = scores[REM]
    seeds = sorted({k[2] for k in rem})
    kinds = [c for c in CORRUPTIONS if any(k[0] == c for k in rem)]
    print(f"Seeds {', '.join(map(str, seeds))}; REM's mean score {statistics.mean(rem.values()):.1f} "
          f"over {len(rem)} cells.\n")
    print("| method | mean score | " + " | ".join(f"REM's lead: {k}" for k in kinds) + " | REM's lead: all | "
          "leads by ≥ 5 |")
    print("|---|---:|" + "---:|" * (len(kinds) + 2))
    others = [m for m in scores if m not in (REM, TRAINED)]
    for method in sorted(others, key=lambda m: -statistics.mean(scores[m].values())):
        shared = [k for k in rem if k in scores[method]]
        per = [interval([rem[k] - scores[method][k] for k in shared if k[0] == kind]) for kind in kinds]
        diffs = [rem[k] - scores[method][k] for k in shared]
        half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
        verdict = "yes" if statistics.mean(diffs) - half >= 5 else (
            "no" if statistics.mean(diffs) + half < 5 else "not resolved")
        print(f"| {method} | {statistics.mean(scores[method].values()):.1f} | " + " | ".join(per)
              + f" | {interval(diffs)} | {verdict} |")


if __name__ == "__main__":
    main()
