"""Every method at its published setting next to its tuned one, from two results folders of one grid.

    .venv/bin/python research/experiments/tuned_vs_published.py research/records/default-published \\
        research/records/default-tuned

Mean score per corruption kind and over all cells, and REM's lead over each method in each folder.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

from rem_unlearn.report import load_records
from rem_unlearn.report.heatmaps import REGULARITY
from rem_unlearn.report.tables import is_ok

CORRUPTIONS = tuple(c for c, _ in REGULARITY)


def scores(folders: str) -> dict[str, dict[str, list[float]]]:
    """method -> corruption -> cell scores ("all": every cell) of comma-separated folders (a cell counts once)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    records = {r["key"]: r for folder in folders.split(",") for r in load_records(folder)}
    for r in records.values():
        if is_ok(r):
            method, kind = r["cell"]["method"], r["cell"]["corruption"]
            out[method][kind].append(r["metrics"]["score"])
            out[method]["all"].append(r["metrics"]["score"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("published", help="results folder(s) of the published settings, comma-separated")
    p.add_argument("tuned", help="results folder(s) of the tuned settings, comma-separated")
    a = p.parse_args()
    pub, tun = scores(a.published), scores(a.tuned)
    kinds = [*[c for c in CORRUPTIONS if any(c in m for m in pub.values())], "all"]
    print("| method | " + " | ".join(f"{k}: published → tuned" for k in kinds) + " | REM's lead, published → tuned |")
    print("|---|" + "---:|" * (len(kinds) + 1))
    for method in sorted(set(pub) & set(tun), key=lambda m: -statistics.mean(tun[m]["all"])):
        cells = [f"{statistics.mean(pub[method][k]):.1f} → {statistics.mean(tun[method][k]):.1f}" for k in kinds]
        lead = "–" if method == "rem" else (
            f"{statistics.mean(pub['rem']['all']) - statistics.mean(pub[method]['all']):+.1f} → "
            f"{statistics.mean(tun['rem']['all']) - statistics.mean(tun[method]['all']):+.1f}")
        print(f"| {method} | " + " | ".join(cells) + f" | {lead} |")


if __name__ == "__main__":
    main()
