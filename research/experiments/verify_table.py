"""The default grid's stress tests (`bench ... verify=[relearn,recalibrate,views]`): which methods remove the
corruption and which only suppress it.

    .venv/bin/python research/experiments/verify_table.py research/records/default-verify research/records/default-verify-defences

Per cell, the relearn attack (a few steps on a clean sample with half of the known corrupted samples mixed in,
at most 10) is measured on the corrupted samples it did not see: attack success on the triggered test images
for the backdoor, healed for random labels.  Two anchors per row: the trained model (`none`, the corruption
fully there) and Retrain at discovery 1.0 (retrained from scratch without any corrupted sample).  A cell's
*share back* is how far relearning moves it from the clean anchor toward the trained one.  As in `verify`, a
cell at least halfway to the trained model before the stress is *not healed*, one that relearning takes at
least halfway back is *suppressed*, the others *removed*.  ``--calibration`` prints the two anchors only.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

#: (metric before, metric after relearning, higher is the corruption) per corruption
MEASURES = {"poison": ("attack_success", "relearn_attack_success", True),
            "random": ("healed", "relearn_healed", False)}
ORDER = ["rem", "rem-official", "scrub", "ga", "potion", "finetune", "cuts", "anp", "ibau"]


def load(folders: list[str]) -> list[dict]:
    records = []
    for folder in folders:
        for path in sorted(Path(folder, "records").glob("*.json")):
            record = json.loads(path.read_text())
            if record.get("status") == "ok" and "relearn_healed" in record["metrics"]:
                records.append(record)
    return records


def values(records: list[dict]) -> dict[tuple[str, str, float], dict]:
    """(corruption, method, rate) -> metrics (one seed: the records' only one)."""
    out: dict[tuple[str, str, float], list[dict]] = defaultdict(list)
    for r in records:
        c = r["cell"]
        out[(c["corruption"], c["method"], float(c["discovery_rate"]))].append(r["metrics"])
    seeds = {len(v) for v in out.values()}
    if seeds != {1}:
        raise SystemExit(f"expected one record per cell, got {sorted(seeds)}")
    return {k: v[0] for k, v in out.items()}


def anchors(cells: dict, corruption: str, rate: float, metric: str) -> tuple[float, float]:
    """(clean, trained): ``metric`` of Retrain at discovery 1.0 and of the trained model at ``rate``."""
    return cells[(corruption, "retrain", 1.0)][metric], cells[(corruption, "none", rate)][metric]


def share_back(value: float, clean: float, trained: float, higher_is_corrupt: bool) -> float:
    """How far ``value`` lies from the clean anchor toward the trained one (0: clean, 1: trained)."""
    gap = (trained - clean) if higher_is_corrupt else (clean - trained)
    moved = (value - clean) if higher_is_corrupt else (clean - value)
    return moved / gap if gap > 0 else float("nan")


def verdict(metrics: dict, cells: dict, corruption: str, rate: float) -> tuple[str, float]:
    """As `verify` says it: *not healed* when the cell is at least halfway to the trained model before the
    stress, *suppressed* when relearning takes it at least halfway back, else *removed*; and the share back."""
    before, after, higher = MEASURES[corruption]
    still = share_back(metrics[before], *anchors(cells, corruption, rate, before), higher)
    back = share_back(metrics[after], *anchors(cells, corruption, rate, after), higher)
    return ("not healed" if still >= 0.5 else "suppressed" if back >= 0.5 else "removed"), back


def table(cells: dict) -> str:
    rates = sorted({k[2] for k in cells})
    lines = []
    for corruption, (before, after, higher) in MEASURES.items():
        name = "attack success" if higher else "healed"
        lines += [f"**{corruption}**: {name} before → after relearning (share back, verdict)", "",
                  "| method | " + " | ".join(f"discovery {r:g}" for r in rates) + " |",
                  "|---|" + "---|" * len(rates)]
        methods = [m for m in ORDER if any(k[:2] == (corruption, m) for k in cells)]
        for method in ["none", "retrain", *methods]:
            row = []
            for rate in rates:
                m = cells.get((corruption, method, rate))
                if m is None:
                    row.append("–")
                    continue
                said, back = verdict(m, cells, corruption, rate)
                row.append(f"{m[before]:.1f} → {m[after]:.1f} ({back:.2f}, {said})")
            lines.append(f"| {method} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def calibration(cells: dict) -> str:
    rates = sorted({k[2] for k in cells})
    lines = ["| corruption | model | " + " | ".join(f"discovery {r:g}: before → relearned" for r in rates) + " |",
             "|---|---|" + "---|" * len(rates)]
    for corruption, (before, after, higher) in MEASURES.items():
        for method, label in (("none", "trained (corrupted)"), ("retrain", "retrained without D_c (at 1.0)")):
            row = []
            for rate in rates:
                m = cells.get((corruption, method, 1.0 if method == "retrain" else rate))
                row.append("–" if m is None else f"{m[before]:.1f} → {m[after]:.1f}")
            lines.append(f"| {corruption} ({'attack success' if higher else 'healed'}) | {label} | "
                         + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+")
    p.add_argument("--calibration", action="store_true")
    args = p.parse_args()
    cells = values(load(args.folders))
    print(calibration(cells) if args.calibration else table(cells), end="")


if __name__ == "__main__":
    main()
