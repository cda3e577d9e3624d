"""Two runs of one grid side by side: per (variant, method), the mean score of each and their paired difference.

What moves when only the execution changes (threads per cell, another CPU): the same cells, seeds and
code, run twice. The paired difference is B minus A per cell; |diff| max is the largest single-cell move.

    .venv/bin/python research/experiments/compare_runs.py results/default-1x2 results/default-180
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from rem_unlearn.report import load_records
from rem_unlearn.report.tables import is_ok, mean_sem


def scores(results_dir: str) -> dict[tuple[str, str], dict[tuple, float]]:
    """{(variant, method): {(corruption, rate, seed): score}} of the folder's finished cells."""
    out: dict[tuple[str, str], dict[tuple, float]] = defaultdict(dict)
    for rec in load_records(results_dir):
        if is_ok(rec):
            c = rec["cell"]
            cell = (c["corruption"], c["discovery_rate"], c["seed"])
            out[(c["variant"], c["method"])][cell] = rec["metrics"]["score"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    args = p.parse_args()
    a, b = scores(args.a), scores(args.b)
    print("| variant | method | score A | score B | B − A (paired) | \\|B − A\\| max | cells |")
    print("|---|---|---:|---:|---:|---:|---:|")
    moves = []
    for key in sorted(set(a) & set(b)):
        cells = sorted(set(a[key]) & set(b[key]))
        diffs = [b[key][c] - a[key][c] for c in cells]
        moves += diffs
        (ma, _), (mb, _), (md, sd) = (mean_sem([a[key][c] for c in cells]), mean_sem([b[key][c] for c in cells]),
                                      mean_sem(diffs))
        print(f"| {key[0]} | {key[1]} | {ma:.2f} | {mb:.2f} | {md:+.2f} ± {sd:.2f} | "
              f"{max(abs(d) for d in diffs):.2f} | {len(cells)} |")
    same = sum(d == 0 for d in moves)
    print(f"\n{len(moves)} cells: {same} identical scores, mean |B − A| {sum(map(abs, moves)) / len(moves):.2f}, "
          f"max {max(map(abs, moves)):.2f}")


if __name__ == "__main__":
    main()
