"""Our main table next to the paper's, from a results folder of the `faithful` preset.

Prints the side-by-side table of research/notes/results.md (mean ± SEM over every cell and seed, as the paper
aggregates), the per-seed means, REM's lead over the strongest baselines (paired by cell), the score
per cell (mean and spread over seeds) and per corruption, and the poison metrics in the official
code's definitions.

    .venv/bin/python research/experiments/main_table.py research/records/archive/faithful-2026-11-29
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from rem_unlearn.report import load_records
from rem_unlearn.report.tables import is_ok, mean_sem, paper_label

#: The paper's main table (CIFAR-10, ResNet-9, mean ± SEM over 3 corruptions x 10 rates x 3 seeds;
#: docs/paper.md §7.1): healed, utility, score.
PAPER = {
    "REM": (81.16, 90.54, 73.40), "REM (ETD)": (83.26, 88.05, 73.19), "NPO (ETD)": (77.50, 86.99, 67.10),
    "SCRUB (ETD)": (66.95, 89.45, 59.85), "BadT (ETD)": (66.24, 88.13, 58.32),
    "Retrained": (53.61, 90.46, 48.52), "Potion": (49.39, 53.06, 36.16),
}
LEAD_OVER = ("NPO (ETD)", "SCRUB (ETD)", "BadT (ETD)")
SECTIONS = ("side-by-side", "per-seed", "leads", "cells", "corruption", "poison")


def fmt(values: list[float]) -> str:
    mean, sem = mean_sem(values)
    return f"{mean:.2f} ± {sem:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir")
    p.add_argument("--section", choices=SECTIONS, action="append",
                   help="print only this table (repeatable; default: every table)")
    a = p.parse_args()
    show = set(a.section or SECTIONS)

    def heading(text: str) -> None:  # a chosen section prints its table alone (a docs block)
        if not a.section:
            print(text)
    grouped: dict[str, list[dict]] = defaultdict(list)
    for rec in load_records(a.results_dir):
        if is_ok(rec):
            grouped[paper_label(rec["cell"]["method"], rec["cell"]["variant"])].append(rec)
    rows = dict(grouped)
    seeds = sorted({r["cell"]["seed"] for recs in rows.values() for r in recs})

    def values(label: str, metric: str, corruption: str | None = None) -> list[float]:
        return [r["metrics"][metric] for r in rows[label]
                if r["metrics"].get(metric) is not None and corruption in (None, r["cell"]["corruption"])]

    ours = {label: mean_sem(values(label, "score"))[0] for label in rows}
    by_our_score = sorted(rows, key=lambda lb: -ours[lb])
    ranked = [label for label in by_our_score if label in PAPER]
    paper_ranked = sorted(PAPER, key=lambda label: PAPER[label][2], reverse=True)
    in_paper_order = sorted(rows, key=lambda lb: (lb not in PAPER, paper_ranked.index(lb) if lb in PAPER else 0, lb))
    corruptions = ("poison", "interclass", "random")
    rates = sorted({r["cell"]["discovery_rate"] for recs in rows.values() for r in recs})
    if "side-by-side" in show:
        heading(f"## Side by side (seeds {seeds}; ours: embedded Fashion-MNIST default; paper: CIFAR-10 ResNet-9)\n")
        print("| row | healed (ours) | utility (ours) | score (ours) | rank (ours) | score (paper) | rank (paper) "
              "| healed (paper) | utility (paper) | cells |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label in in_paper_order:
            rank = str(ranked.index(label) + 1) if label in PAPER else "–"
            ph, pu, ps = PAPER.get(label, (None, None, None))
            paper = (f"{ps:.2f} | {paper_ranked.index(label) + 1} | {ph:.2f} | {pu:.2f}" if label in PAPER
                     else "– | – | – | –")
            print(f"| {label} | {fmt(values(label, 'healed'))} | {fmt(values(label, 'utility'))} | "
                  f"**{fmt(values(label, 'score'))}** | {rank} | {paper} | {len(rows[label])} |")

    if "per-seed" in show:
        heading("\n## Mean score per seed (over the 12 cells of each seed)\n")
        print("| row | " + " | ".join(f"seed {s}" for s in seeds) + " |")
        print("|---|" + "---:|" * len(seeds))
        for label in by_our_score:
            per_seed = []
            for s in seeds:
                v = [r["metrics"]["score"] for r in rows[label] if r["cell"]["seed"] == s]
                per_seed.append(f"{mean_sem(v)[0]:.2f} (n={len(v)})" if v else "–")
            print(f"| {label} | " + " | ".join(per_seed) + " |")

    if "leads" in show:
        heading("\n## REM's lead, paired by cell (REM's score minus the baseline's, same corruption, rate and seed)\n")
        print("| REM row | over | mean lead ± SEM | cells | lead ≥ 5? | paper's lead |")
        print("|---|---|---:|---:|---|---:|")

        def scores_by_cell(label: str) -> dict[tuple, float]:
            return {(r["cell"]["corruption"], r["cell"]["discovery_rate"], r["cell"]["seed"]): r["metrics"]["score"]
                    for r in rows.get(label, [])}

        for rem in ("REM", "REM (ETD)"):
            mine = scores_by_cell(rem)
            for other in LEAD_OVER:
                diffs = [mine[cell] - score for cell, score in scores_by_cell(other).items() if cell in mine]
                if not diffs:
                    continue
                lead = mean_sem(diffs)[0]
                print(f"| {rem} | {other} | {fmt(diffs)} | {len(diffs)} | {'yes' if lead >= 5 else 'no'} | "
                      f"{PAPER[rem][2] - PAPER[other][2]:+.2f} |")

    if "cells" in show:
        heading(f"\n## Score per cell (mean over seeds {seeds}; in brackets the largest minus the smallest seed)\n")
        print("| row | " + " | ".join(f"{c} {rate:g}" for c in corruptions for rate in rates) + " |")
        print("|---|" + "---:|" * (len(corruptions) * len(rates)))
        for label in in_paper_order:
            cells = []
            for c in corruptions:
                for rate in rates:
                    v = [r["metrics"]["score"] for r in rows[label]
                         if r["cell"]["corruption"] == c and r["cell"]["discovery_rate"] == rate]
                    cells.append(f"{mean_sem(v)[0]:.1f} ({max(v) - min(v):.1f})" if v else "–")
            print(f"| {label} | " + " | ".join(cells) + " |")

    if "corruption" in show:
        heading("\n## Mean score per corruption\n")
        print("| row | " + " | ".join(corruptions) + " |")
        print("|---|" + "---:|" * len(corruptions))
        for label in by_our_score:
            print(f"| {label} | " + " | ".join(fmt(values(label, "score", c)) for c in corruptions) + " |")

    if "poison" in show:
        heading("\n## Poison cells in both definitions (ours / the official code's)\n")
        print("| row | healed | healed (official) | attack success | attack success (official) |")
        print("|---|---:|---:|---:|---:|")
        for label in by_our_score:
            print(f"| {label} | {fmt(values(label, 'healed', 'poison'))} | {fmt(values(label, 'healed_official', 'poison'))}"
                  f" | {fmt(values(label, 'attack_success', 'poison'))} | "
                  f"{fmt(values(label, 'attack_success_official', 'poison'))} |")


if __name__ == "__main__":
    main()
