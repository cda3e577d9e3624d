"""The tables of research/notes/results.md and the README, from one benchmark results folder.

    .venv/bin/python research/experiments/bench_tables.py results/default
"""

from __future__ import annotations

import argparse

from rem_unlearn.report import cell_table, load_records
from rem_unlearn.report.heatmaps import REGULARITY
from rem_unlearn.report.tables import catastrophic_cells, is_ok, mean_sem

CORRUPTIONS = tuple(c for c, _ in REGULARITY)  # high to low regularity, as the heatmaps


def _by_cell(records: list[dict]) -> dict[tuple, dict]:
    return {(r["cell"]["method"], r["cell"]["variant"], r["cell"]["corruption"], r["cell"]["discovery_rate"]):
            r for r in records if is_ok(r)}


def rem_table(cells: dict[tuple, dict], rates: list[float], variant: str, base: str) -> str:
    """One row per (corruption, rate): the trained model (``base``) against REM on it."""
    lines = ["| corruption | discovery | trained: healed / utility / score | REM: healed / utility / score "
             "| REM attack success | REM time (s) |", "|---|---:|---|---|---:|---:|"]
    for corruption in CORRUPTIONS:
        for rate in rates:
            row = [cells.get((m, variant, corruption, rate)) for m in (base, "rem")]
            if None in row:
                continue
            hus = [f"{r['metrics']['healed']:.1f} / {r['metrics']['utility']:.1f} / **{r['metrics']['score']:.1f}**"
                   for r in row]
            asr = row[1]["metrics"].get("attack_success")
            lines.append(f"| {corruption} | {rate:g} | {hus[0]} | {hus[1]} | "
                         f"{'–' if asr is None else f'{asr:.1f}'} | {row[1]['wall_time_s']:.1f} |")
    return "\n".join(lines) + "\n"


def method_table(cells: dict[tuple, dict], methods: list[str], rates: list[float], variant: str) -> str:
    """Score (healed / utility) per method and (corruption, rate)."""
    columns = [(c, r) for c in CORRUPTIONS for r in rates]
    lines = ["| method | " + " | ".join(f"{c} {r:g}" for c, r in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for method in methods:
        out = []
        for c, r in columns:
            rec = cells.get((method, variant, c, r))
            m = rec and rec["metrics"]
            out.append("–" if not m else f"{m['score']:.1f} ({m['healed']:.0f} / {m['utility']:.0f})")
        lines.append(f"| {'trained (none)' if method == 'none' else method} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def means(records: list[dict], methods: list[str], variant: str) -> str:
    """Mean ± SEM of the score over each method's cells, best first."""
    stats = {m: mean_sem([r["metrics"]["score"] for r in records
                          if is_ok(r) and r["cell"]["method"] == m and r["cell"]["variant"] == variant])
             for m in methods}
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][0])
    return ", ".join(f"{m} {mean:.1f} ± {sem:.1f}" for m, (mean, sem) in ranked) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir")
    a = p.parse_args()
    records = load_records(a.results_dir)
    cells = _by_cell(records)
    rates = sorted({r["cell"]["discovery_rate"] for r in records})
    for variant, base in (("capacity", "none"), ("etd", "etd")):
        methods = sorted({r["cell"]["method"] for r in records if r["cell"]["variant"] == variant},
                         key=lambda m: (m != base, m != "rem", m))
        if not methods:
            continue
        print(f"## REM vs the trained model ({variant} model)\n")
        print(rem_table(cells, rates, variant, base))
        print(f"## Every method at discovery {rates[0]:g} and {rates[-1]:g} ({variant} model)\n")
        print(method_table(cells, methods, [rates[0], rates[-1]], variant))
        print(f"## Mean score over each method's cells ({variant} model)\n")
        print(means(records, methods, variant))
        print(f"## The full per-cell table at discovery {rates[0]:g} and {rates[-1]:g} ({variant} model)\n")
        print(cell_table(records, rates=[rates[0], rates[-1]], methods=methods, variant=variant))
    print("## Catastrophic cells (score more than 10 below the trained model)\n")
    for method, found in sorted(catastrophic_cells(records).items()):
        where = ", ".join(f"{c['corruption']} {c['discovery_rate']:g}" for c in found)
        print(f"- {method}: {len(found)}" + (f" ({where})" if found else ""))


if __name__ == "__main__":
    main()
