"""REM against what practitioners use instead (detect-then-unlearn, CUTS, ANP, i-BAU) on the default grid, from
committed records: the score table, the poison rows with attack success, and the cells where REM loses.

    .venv/bin/python research/experiments/alternatives_table.py --scores
    .venv/bin/python research/experiments/alternatives_table.py --poison
    .venv/bin/python research/experiments/alternatives_table.py --losses

A method's records come from the first folder that holds it (tuned before published); seed 0, the seed every
method has.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RECORDS = Path(__file__).resolve().parents[2] / "research" / "records"
FOLDERS = ["default-tuned", "default-tuned-rest", "default-defences", "default-alternatives", "default-published",
           "default-published-rest"]
ALTERNATIVES = ["detect-rem", "detect-retrain", "cuts", "anp", "ibau"]
UNLEARNING = ["npo", "scrub", "ga", "finetune", "bad-teacher", "cf-k", "eu-k", "salun", "ssd",
              "potion", "retrain"]
CORRUPTIONS, RATES = ("poison", "interclass", "random"), (0.1, 0.5, 1.0)
# The defences again at their papers' step counts (over the grid's budget): (folder, method, label).
OWN_STEPS = [("default-defences-own-steps", "anp", "anp, 2,000 steps (its paper's)"),
             ("default-defences-own-steps", "ibau", "ibau, 250 steps (its paper's)")]


def records(seed: int = 0, folders=FOLDERS) -> dict[str, dict[tuple[str, float], dict]]:
    """{method: {(corruption, rate): record}} at ``seed``, each method from its first folder."""
    out: dict[str, dict[tuple[str, float], dict]] = {}
    for folder in folders:
        if not (RECORDS / folder).is_dir():
            continue
        found: dict[str, dict] = {}
        for path in sorted((RECORDS / folder / "records").glob("*.json")):
            r = json.loads(path.read_text())
            c = r["cell"]
            if r["status"] == "ok" and c["seed"] == seed and c["method"] not in out:
                found.setdefault(c["method"], {})[(c["corruption"], c["discovery_rate"])] = r
        out.update(found)
    return out


def best_unlearning(recs) -> str:
    """The unlearning baseline (neither REM) with the best mean score over the grid."""
    means = {m: sum(r["metrics"]["score"] for r in recs[m].values()) / len(recs[m]) for m in UNLEARNING if m in recs}
    return max(means, key=means.get)


def scores() -> None:
    recs = records()
    best = best_unlearning(recs)
    rows = ["rem", "rem-official", best, *ALTERNATIVES]
    head = [f"{k} {r:g}" for k in CORRUPTIONS for r in RATES]
    print("| method | " + " | ".join(head) + " | mean |")
    print("|---|" + "---:|" * (len(head) + 1))
    for m in rows:
        cells = [recs.get(m, {}).get((k, r)) for k in CORRUPTIONS for r in RATES]
        values = [c["metrics"]["score"] for c in cells if c]
        name = f"{m} (the best unlearning baseline)" if m == best else m
        mean = f"{sum(values) / len(values):.1f}" if len(values) == len(cells) else "–"
        print(f"| {name} | " + " | ".join(f"{c['metrics']['score']:.1f}" if c else "–" for c in cells) + f" | {mean} |")


def poison() -> None:
    recs = records()
    print("| method | " + " | ".join(f"discovery {r:g}: healed / utility / attack success" for r in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    rows = [(m, m, recs.get(m, {})) for m in ["none", "rem", "rem-official", *ALTERNATIVES]]
    rows += [(label, m, records(folders=[folder]).get(m, {})) for folder, m, label in OWN_STEPS]
    for label, m, recs_m in rows:
        cells = [recs_m.get(("poison", r)) for r in RATES]
        if not any(cells):
            continue
        print(f"| {label} | " + " | ".join(
            f"{c['metrics']['healed']:.1f} / {c['metrics']['utility']:.1f} / {c['metrics']['attack_success']:.1f}"
            if c else "–" for c in cells) + " |")


def losses() -> None:
    recs = records()
    lines = []
    for k in CORRUPTIONS:
        for r in RATES:
            rem = recs["rem"][(k, r)]["metrics"]["score"]
            for m in ALTERNATIVES:
                c = recs.get(m, {}).get((k, r))
                if c and c["metrics"]["score"] > rem:
                    lines.append(f"* {k} at discovery {r:g}: {m} {c['metrics']['score']:.1f} against REM {rem:.1f} "
                                 f"(+{c['metrics']['score'] - rem:.1f}; healed {c['metrics']['healed']:.1f} / "
                                 f"{recs['rem'][(k, r)]['metrics']['healed']:.1f}, utility "
                                 f"{c['metrics']['utility']:.1f} / {recs['rem'][(k, r)]['metrics']['utility']:.1f})")
    print("\n".join(lines) if lines else "REM's score is the highest of these methods in every cell.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--scores", action="store_true")
    g.add_argument("--poison", action="store_true")
    g.add_argument("--losses", action="store_true")
    a = p.parse_args()
    scores() if a.scores else poison() if a.poison else losses()


if __name__ == "__main__":
    main()
