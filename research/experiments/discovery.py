"""Discovery on the embedded default: precision/recall of every scorer, their cost, and REM end to end.

For each corruption: the trained model of the preset (cached), the known ids
(discovery 0.1, nested draw, seed s), then every scorer on one shared context
(features and REM runs are computed once and shared, their costs are reported
by component).  Prints, per corruption and scorer, precision and recall of the
chosen set at the stopping rule's k and at k = |D_c| (the true size; ground
truth is used only here, to measure).  Then one REM run with its default
config at discovery 0.1 (the cost unit), and end to end: REM with the known
ids alone, with the known ids extended by detection, and with every corrupted
id known.

    OMP_NUM_THREADS=1 .venv/bin/python research/experiments/discovery.py                     # everything, seed 0
    .venv/bin/python research/experiments/discovery.py --corruptions poison --end-to-end ""    # one table
    .venv/bin/python research/experiments/discovery.py --table research/records/discovery.jsonl \
        --section scorers --corruption poison                                               # a docs table

``--record FILE`` appends every measured row (scorer, cost, end to end), with the commit and the command that
made it, to a JSON-lines file; ``--table FILE --section S`` prints one of the docs' tables from such a file
and trains nothing.  Where a row was recorded twice, the later one counts.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from rem_unlearn.api import unlearn
from rem_unlearn.checkpoint import source_commit
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discovered_ids as draw
from rem_unlearn.discovery import discovery_context, rank
from rem_unlearn.experiment import prepare
from rem_unlearn.presets import experiment_preset

SCORERS = ["nearest", "similarity", "knn-label", "spectral", "rem-transfer", "rem-similarity", "auto",
           "confident-learning", "auto+cl"]
NEEDS_CLEANLAB = ("confident-learning", "auto+cl")
#: Rows that are a scorer with settings: the ensemble of auto's members plus confident learning.
VARIANTS = {"auto+cl": ("ensemble", {"members": ["similarity", "rem-transfer", "rem-similarity",
                                                 "confident-learning"]})}


def task_of(corruption: str, overrides: list[str]):
    cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                      overrides=[f"corruption.kind={corruption}", "runtime.progress=false", *overrides])
    return prepare(cfg)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(task, known, scorers: list[str], seed: int, cl_overrides: dict,
            poison_cl: bool = False) -> tuple[list[dict], dict]:
    """Every scorer on one context; returns rows and the shared costs (features, REM runs, fold trainings)."""
    train, truth = task.corrupted.train, task.corrupted.corrupted_ids
    ctx = discovery_context(task.model, train, known, runtime=task.runtime, pretrain=task.cfg.train)
    _, feature_s = timed(lambda: ctx.features)
    rows, costs = [], {"features": feature_s}
    for name in scorers:
        if name in NEEDS_CLEANLAB and task.corrupted.kind == "poison" and not poison_cl:
            continue  # a backdoor is learned out of sample too: label quality cannot see it (docs/discovery.md)
        scorer, overrides = VARIANTS.get(name, (name, {}))
        overrides = {"seed": seed, **overrides}
        if name == "confident-learning":
            overrides.update(cl_overrides)
        elif name in VARIANTS:
            overrides["member_overrides"] = {"confident-learning": dict(cl_overrides)}
        try:
            result, seconds = timed(lambda: rank(ctx, scorer, **overrides))
        except ImportError as exc:  # the [detect] extra
            print(f"  {name}: skipped ({exc})")
            continue
        if name == "rem-transfer":
            costs["three REM runs (epochs 1)"] = seconds
        if name == "confident-learning":
            costs["confident learning"] = seconds
        p, r = result.precision_recall(truth)
        p_true, r_true = result.precision_recall(truth, len(truth))
        rows.append({"scorer": name, "chosen": result.info.get("chosen", ""), "k": result.k, "rule": result.rule,
                     "precision": p, "recall": r, "p_true": p_true, "r_true": r_true, "seconds": seconds,
                     "result": result})
    return rows, costs


def print_table(corruption: str, rows: list[dict], truth: int) -> None:
    print(f"\n### {corruption} (|D_c| = {truth})\n")
    print("| scorer | k (rule) | precision @ k | recall @ k | precision = recall @ |D_c| "
          "| time in shared context (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        chosen = f" → {row['chosen']}" if row["chosen"] else ""
        print(f"| {row['scorer']}{chosen} | {row['k']} ({row['rule']}) | {row['precision']:.1f} | "
              f"{row['recall']:.1f} | {row['p_true']:.1f} | {row['seconds']:.1f} |")


def rem(task, ids):
    """One REM run with its default config (the paper's budget of 10 passes, spent whole), timed."""
    return timed(lambda: unlearn(task.model, task.corrupted.train, ids, "rem", runtime=task.runtime,
                                 max_utility_drop=None,
                                 pretrain=task.cfg.train))


def end_to_end(task, known, first, found) -> dict[str, dict]:
    """REM (default config) with the known ids (``first``: that run, done already), the detected set, all ids."""
    out = {}
    for label, ids in (("known 0.1", known), ("known 0.1 + detected", found),
                       ("known 1.0", task.corrupted.corrupted_ids)):
        result, seconds = first if label == "known 0.1" else rem(task, ids)
        out[label] = {**task.evaluate(result.model), "seconds": seconds, "n": len(ids)}
    return out


NAMES = {"nearest": "`nearest` (naive probe)"}
CORRUPTIONS = ("poison", "interclass", "random")


def latest(rows: list[dict], kind: str) -> dict[tuple, dict]:
    """The record's rows of one kind, keyed by what they measure; a row recorded again replaces the earlier."""
    keys = {"scorer": ("corruption", "seed", "scorer"), "cost": ("corruption", "seed"),
            "end_to_end": ("corruption", "seed", "forget_set")}[kind]
    return {tuple(r[k] for k in keys): r for r in rows if r["row"] == kind}


def scorer_label(scorer: str, chosen: str = "") -> str:
    name = NAMES.get(scorer, f"`{scorer}`")
    if chosen:
        name += f" → {'+'.join(f'`{c}`' for c in chosen.split('+'))}"
    return f"**{name}**" if scorer == "auto" else name


def scorers_table(rows: list[dict], args) -> None:
    """One corruption and seed: precision and recall at the rule's k, and at k = |D_c|."""
    print("| scorer | k (rule) | precision @ k | recall @ k | @ k = \\|D_c\\| |")
    print("|---|---:|---:|---:|---:|")
    for (corruption, seed, _), r in latest(rows, "scorer").items():
        if corruption == args.corruption and seed == args.seed:
            print(f"| {scorer_label(r['scorer'], r['chosen'])} | {r['k']} ({r['rule']}) | {r['precision']:.1f} | {r['recall']:.1f} | "
                  f"{r['p_true']:.1f} |")


def seeds_table(rows: list[dict], args) -> None:
    """Means over every seed recorded for a scorer: precision / recall at the rule's k, and at |D_c|."""
    by, seeds = {}, set()
    for (corruption, seed, scorer), r in latest(rows, "scorer").items():
        by.setdefault(scorer, {}).setdefault(corruption, []).append(r)
        seeds.add(seed)
    seeds = sorted(seeds)
    print("| scorer | seeds | " + " | ".join(f"{c} @ k | @ \\|D_c\\|" for c in CORRUPTIONS) + " |")
    print("|---|---|" + "---:|---:|" * len(CORRUPTIONS))
    for scorer, per in by.items():
        counts = {len(per.get(c, [])) for c in CORRUPTIONS}
        if counts != {len(seeds)}:
            continue  # a scorer measured on fewer seeds (or corruptions) than the rest has no mean here
        cells = []
        for c in CORRUPTIONS:
            mean = lambda key: sum(r[key] for r in per[c]) / len(per[c])  # noqa: E731
            cells += [f"{mean('precision'):.1f} / {mean('recall'):.1f}", f"{mean('p_true'):.1f}"]
        print(f"| {scorer_label(scorer)} | {','.join(map(str, seeds))} | " + " | ".join(cells) + " |")


def costs_table(rows: list[dict], args) -> None:
    """Seconds (and REM runs) on one thread; the unit is one REM run with its default config."""
    costs = {c: r for (c, _), r in latest(rows, "cost").items()}
    scorers = {(c, s): r for (c, seed, s), r in latest(rows, "scorer").items() if seed == 0}
    present = [c for c in CORRUPTIONS if c in costs]
    print("| | " + " | ".join(present) + " |")
    print("|---|" + "---:|" * len(present))

    def line(label: str, seconds: dict) -> None:
        cells = [f"{seconds[c]:.1f}" + ("" if label.startswith("one REM") else
                                           f" ({seconds[c] / costs[c]['rem_seconds']:.2f})")
                 if seconds.get(c) is not None else "–" for c in present]
        print(f"| {label} | " + " | ".join(cells) + " |")

    line("one REM run, default config (the unit)", {c: costs[c]["rem_seconds"] for c in present})
    line("feature pass, shared by every scorer", {c: costs[c]["costs"]["features"] for c in present})
    for scorer, label in (("rem-transfer", "`rem-transfer`: three REM runs of one pass + four loss passes"),
                          ("rem-similarity", "`rem-similarity`, after `rem-transfer`'s REM runs"),
                          ("auto", "`auto`, after its members ran"),
                          ("confident-learning", "`confident-learning`: K trainings of a few epochs")):
        line(label, {c: scorers[(c, scorer)]["seconds"] for c in present if (c, scorer) in scorers})


def end_to_end_table(rows: list[dict], args) -> None:
    """REM with the known ids, with the known ids extended by the detector, with every corrupted id."""
    e2e = latest(rows, "end_to_end")
    labels = ("known 0.1", "known 0.1 + detected", "known 1.0")
    detectors = {r["detector"] for r in e2e.values()}
    print("| corruption | " + " | ".join(label.replace("detected", f"`{'/'.join(sorted(detectors))}`")
                                        for label in labels) + " |")
    print("|---|---|---|---|")
    for c in CORRUPTIONS:
        cells = []
        for label in labels:
            r = next((r for (cc, _, f), r in e2e.items() if cc == c and f == label), None)
            if r is None:
                cells.append("–")
                continue
            asr = "" if r["attack_success"] is None else f" / ASR {r['attack_success']:.1f}"
            found = (f", P/R {r['detected_precision']:.1f}/{r['detected_recall']:.1f}"
                     if label.endswith("detected") else "")
            cells.append(f"{r['healed']:.1f} / {r['utility']:.1f} / **{r['score']:.1f}**{asr} ({r['n']} ids{found})")
        if any(cell != "–" for cell in cells):
            print(f"| {c} | " + " | ".join(cells) + " |")


#: Discovery's targets (docs/discovery.md): the poison at the stopping rule's own k (precision and recall),
#: the label corruptions at k = |D_c| (where precision = recall).
TARGETS = {"poison": 95.0, "interclass": 60.0, "random": 50.0}


def targets_table(rows: list[dict], args) -> None:
    """Each target against `auto`, the best single scorer of the default install and the `[detect]` rows."""
    scorers = latest(rows, "scorer")

    def value(r: dict, corruption: str) -> float:
        return min(r["precision"], r["recall"]) if corruption == "poison" else r["p_true"]

    def shown(r: dict, corruption: str) -> str:
        name = scorer_label(r["scorer"], r["chosen"]).strip("*")
        if corruption == "poison":
            return f"{name} {r['precision']:.1f} / {r['recall']:.1f} at k = {r['k']}"
        return f"{name} {r['p_true']:.1f}"

    def verdict(r: dict, corruption: str) -> str:
        return "hit" if value(r, corruption) >= TARGETS[corruption] else "missed"

    print("| target (seed 0) | `auto` | best single scorer | with `[detect]` | `auto`, mean over seeds |")
    print("|---|---|---|---|---:|")
    for c, target in TARGETS.items():
        at = (f"≥ {target:.0f} / {target:.0f} at the rule's own k" if c == "poison"
              else f"≥ {target:.0f} at k = \\|D_c\\|")
        seed0 = [r for (cc, seed, _), r in scorers.items() if cc == c and seed == 0]
        auto = next((r for r in seed0 if r["scorer"] == "auto"), None)
        single = max((r for r in seed0 if r["scorer"] not in ("auto", *NEEDS_CLEANLAB)),
                     key=lambda r: value(r, c), default=None)
        detect = max((r for r in seed0 if r["scorer"] in NEEDS_CLEANLAB), key=lambda r: value(r, c), default=None)
        autos = [r for (cc, _, name), r in scorers.items() if cc == c and name == "auto"]
        keys = ("precision", "recall") if c == "poison" else ("p_true",)
        mean = " / ".join(f"{sum(r[k] for r in autos) / len(autos):.1f}" for k in keys) if autos else "–"
        cells = [f"{shown(r, c)}: {verdict(r, c)}" if r else "–" for r in (auto, single, detect)]
        print(f"| {c} {at} | " + " | ".join(cells) + f" | {mean} ({len(autos)} seeds) |")


SECTIONS = {"scorers": scorers_table, "seeds": seeds_table, "costs": costs_table, "end-to-end": end_to_end_table,
            "targets": targets_table}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corruptions", default="poison,interclass,random")
    ap.add_argument("--scorers", default=",".join(SCORERS))
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--seeds", default="0", help="discovery (and scorer) seeds, comma-separated")
    ap.add_argument("--end-to-end", default="poison,interclass,random",
                    help="corruptions to run REM end to end on (seed: the first); empty for none")
    ap.add_argument("--detector", default="auto", help="the scorer whose chosen set REM gets end to end")
    ap.add_argument("--no-rem", action="store_true", help="precision/recall only: no REM run for costs or end to end")
    ap.add_argument("--poison-cl", action="store_true", help="run confident learning on the poison too")
    ap.add_argument("--cl-epochs", type=int, default=3)
    ap.add_argument("--cl-folds", type=int, default=4)
    ap.add_argument("--record", type=Path, help="append every measured row to this JSON-lines file")
    ap.add_argument("--table", type=Path, metavar="RECORD", help="print a table of a JSON-lines record and stop")
    ap.add_argument("--section", choices=sorted(SECTIONS), default="scorers", help="the table --table prints")
    ap.add_argument("--corruption", default="poison", help="--section scorers: the corruption")
    ap.add_argument("--seed", type=int, default=0, help="--section scorers: the discovery seed")
    ap.add_argument("overrides", nargs="*", help="experiment config overrides (key=value)")
    args = ap.parse_args()
    if args.table:
        rows = [json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]
        SECTIONS[args.section](rows, args)
        return
    stamp = {"commit": source_commit(),
             "command": shlex.join(["research/experiments/discovery.py", *sys.argv[1:]])}

    def keep(row: dict) -> None:
        if args.record:
            with args.record.open("a") as f:
                f.write(json.dumps({**stamp, **row}) + "\n")
    seeds = [int(s) for s in args.seeds.split(",")]
    e2e = [c for c in args.end_to_end.split(",") if c]
    cl = {"epochs": args.cl_epochs, "folds": args.cl_folds}
    summary: dict[str, dict] = {}
    for corruption in args.corruptions.split(","):
        task = task_of(corruption, args.overrides)
        truth = task.corrupted.corrupted_ids
        for seed in seeds:
            known = draw(truth, args.rate, seed)
            rows, costs = measure(task, known, args.scorers.split(","), seed, cl, args.poison_cl)
            print_table(f"{corruption}, seed {seed}, {len(known)} known", rows, len(truth))
            summary[f"{corruption} seed {seed}"] = {"rows": rows, "costs": costs}
            for row in rows:
                keep({"row": "scorer", "corruption": corruption, "seed": seed, "known": len(known),
                      "truth": len(truth), **{k: v for k, v in row.items() if k != "result"}})
            if seed != seeds[0] or args.no_rem:
                continue  # costs and end to end: the first seed only
            first = rem(task, known)
            rem_s = first[1]
            print(f"\ncosts (s): one REM run, default config, discovery {args.rate}: {rem_s:.1f}; "
                  + "; ".join(f"{k}: {v:.1f} ({v / rem_s:.2f} REM runs)" for k, v in costs.items()))
            keep({"row": "cost", "corruption": corruption, "seed": seed, "rem_seconds": rem_s, "costs": costs})
            if corruption in e2e:
                found = next((r["result"] for r in rows if r["scorer"] == args.detector), None)
                if found is None:
                    continue
                e = end_to_end(task, known, first, found.selected)
                precision, recall = found.precision_recall(truth)
                for label, m in e.items():
                    keep({"row": "end_to_end", "corruption": corruption, "seed": seed, "forget_set": label,
                          "detector": args.detector, "detected_k": found.k, "detected_precision": precision,
                          "detected_recall": recall, **m})
                print(f"\nend to end, REM default config ({corruption}; detection: {args.detector}, "
                      f"{found.k} ids, precision/recall {precision:.1f} / {recall:.1f})\n")
                print("| forget set | ids | healed | utility | score | ASR | REM time (s) |")
                print("|---|---:|---:|---:|---:|---:|---:|")
                for label, m in e.items():
                    asr = "–" if m["attack_success"] is None else f"{m['attack_success']:.1f}"
                    print(f"| {label} | {m['n']} | {m['healed']:.1f} | {m['utility']:.1f} | {m['score']:.1f} | {asr} | "
                          f"{m['seconds']:.1f} |")
    if len(seeds) > 1:
        print("\n### mean over seeds: precision / recall at the stopping rule's k, and at |D_c|\n")
        for corruption in args.corruptions.split(","):
            per = [summary[f"{corruption} seed {s}"]["rows"] for s in seeds]
            for name in [r["scorer"] for r in per[0]]:
                vals = [next(r for r in rows if r["scorer"] == name) for rows in per]
                mean = lambda key: sum(v[key] for v in vals) / len(vals)  # noqa: E731
                print(f"{corruption:<10} {name:<20} {mean('precision'):5.1f} / {mean('recall'):5.1f}   "
                      f"@|D_c| {mean('p_true'):5.1f}")


if __name__ == "__main__":
    main()
