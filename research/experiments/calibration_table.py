"""What the trained models of a results folder learned before any unlearning: the calibration table.

Reads the cells of the trained capacity model (`none`) and of the ETD model (`etd`) at discovery 1.0, where
the forget set is all of D_c, so its accuracy as stored is how much of the corruption the model fits (the
wrong labels, or the backdoor's target class on triggered images).

    .venv/bin/python research/experiments/calibration_table.py research/records/faithful --seeds 0
"""

from __future__ import annotations

import argparse
import statistics

from rem_unlearn.report import load_records

ROWS = (("capacity", "none", "capacity model"), ("etd", "etd", "ETD model, drop mode"))
CORRUPTIONS = ("random", "interclass", "poison")
COLUMNS = (("test_accuracy", "clean test acc."), ("utility", "utility"), ("healed", "healed"),
           ("forget_accuracy", "fit on D_c (as stored)"), ("attack_success", "attack success"))


def cell(values: list[float], unit: str = " %") -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}{unit}"
    return f"{min(values):.1f}–{max(values):.1f}{unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")], default=None,
                   help="only these seeds (comma-separated); several give the range over them")
    a = p.parse_args()
    records = [r for r in load_records(a.folder) if r["cell"]["discovery_rate"] == 1.0
               and (a.seeds is None or r["cell"]["seed"] in a.seeds)]
    print("| model | corruption | " + " | ".join(title for _, title in COLUMNS) + " | training time |")
    print("|---|---|" + "---:|" * (len(COLUMNS) + 1))
    shown = []
    for variant, method, label in ROWS:
        for corruption in CORRUPTIONS:
            found = [r for r in records if (r["cell"]["variant"], r["cell"]["method"], r["cell"]["corruption"])
                     == (variant, method, corruption)]
            if not found:
                continue
            values = {key: [r["metrics"][key] for r in found if r["metrics"].get(key) is not None]
                      for key, _ in COLUMNS}
            shown += found
            seconds = [r["train_seconds"] for r in found]
            print(f"| {label} | {corruption} | " + " | ".join(cell(values[key]) for key, _ in COLUMNS)
                  + f" | {cell(seconds, ' s')} |")
    seeds = sorted({r["cell"]["seed"] for r in shown})
    over = f"Seeds {', '.join(map(str, seeds))}; a range is the lowest and highest over them" if len(seeds) > 1 \
        else f"Seed {seeds[0]}"
    print(f"\n{over}. Training time: mean {statistics.mean(r['train_seconds'] for r in shown):.0f} s per model "
          "as recorded.")


if __name__ == "__main__":
    main()
