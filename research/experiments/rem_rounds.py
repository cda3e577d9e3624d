"""REM's stopping rule against running every round, on the capacity model of the embedded default.

Runs REM for all rounds of the paper's 10-round budget (``patience=None``) on each
(corruption, discovery rate) cell, scores the model after every round on the test
metrics (for this study only: REM's own selection never sees them), and appends
one JSON line per cell to ``--out``.  It then replays REM's test-free rule on the
recorded proxies -- stop after ``patience`` rounds without a better proxy, once D_f
is at or below gamma -- and prints, per cell, the score of the round the proxy
keeps with the rule and with every round, and how many rounds the rule runs.

    .venv/bin/python research/experiments/rem_rounds.py --out rounds.jsonl        # 12 cells, about 40 min
    .venv/bin/python research/experiments/rem_rounds.py --replay rounds.jsonl     # the table again, no training

``--seeds 0,1,2`` repeats every cell with that seed for discovery and unlearning (the
trained model stays the same); ``--set`` takes experiment overrides (``runtime.device=cuda``),
``--method-set`` settings of REM (``optim.lr=0.01``), recorded with each cell.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics

from rem_unlearn import unlearn
from rem_unlearn.config import ExperimentConfig, apply_overrides, load_config, to_dict
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.experiment import prepare
from rem_unlearn.methods.registry import method_config
from rem_unlearn.presets import experiment_preset


def record_cell(task, corruption: str, rate: float, seed: int = 0, settings: dict | None = None) -> dict:
    scores: dict[str, dict] = {}
    forget = discovered_ids(task.corrupted.corrupted_ids, rate, seed=seed)
    result = unlearn(task.model, task.corrupted.train, forget, "rem", runtime=task.runtime, max_utility_drop=None,
                     **{"epochs": 10, **(settings or {}), "patience": None, "seed": seed},
                     on_epoch=lambda model, label: scores.update({label: task.evaluate(model)}))
    proxies = {h["at"]: h for h in result.history if h.get("event") == "proxy"}
    return {"corruption": corruption, "rate": rate, "seed": seed, "wall": result.wall_time_s,
            "device": str(task.runtime.device), **({"settings": settings} if settings else {}),
            "per_round": [{"label": label, **{k: scores[label][k] for k in ("score", "healed", "utility",
                                                                           "attack_success")},
                           **{k: v for k, v in proxies[label].items()
                              if k in ("proxy", "keeping", "removing", "forget_stored", "forget_views")}}
                          for label in scores]}


def stop_after(per_round: list[dict], patience: int | None, gamma: float = 0.2, min_gain: float = 0.0) -> int:
    """The number of rounds REM's rule runs (``per_round[0]`` is the start, then one entry per round).

    A round counts as an improvement when its proxy beats the best by more than ``min_gain``; the rule
    stops after ``patience`` rounds without one, once D_f's accuracy is at most ``gamma``.
    """
    best, stale = per_round[0]["proxy"], 0
    for i, row in enumerate(per_round[1:], 1):
        stale = 0 if row["proxy"] > best + min_gain else stale + 1
        best = max(best, row["proxy"])
        if patience is not None and stale >= patience and row["removing"] <= gamma:
            return i
    return len(per_round) - 1


def kept_row(per_round: list[dict], rounds: int) -> dict:
    """The round with the best proxy among the start and the first ``rounds`` rounds (the first on a tie)."""
    return max(per_round[:rounds + 1], key=lambda row: row["proxy"])


def kept_score(per_round: list[dict], rounds: int) -> float:
    return kept_row(per_round, rounds)["score"]


def attack_success_per_round(rows: list[dict], rate: float, patience: int = 1) -> str:
    """Attack success after every round of the backdoor cells at ``rate``, the round the proxy keeps over all
    rounds (REM's default), and the rounds run and the round kept with the stopping rule at ``patience``."""
    rows = [r for r in rows if r["corruption"] == "poison" and r["rate"] == rate]
    n = max(len(r["per_round"]) for r in rows) - 1
    lines = ["| seed | " + " | ".join(f"r{i}" for i in range(1, n + 1))
             + f" | default: kept (ASR) | patience={patience}: rounds, kept (ASR) |",
             "|---:|" + "---:|" * n + "---|---|"]

    def kept(row: dict) -> str:
        text = f"{row['label']} ({row['attack_success']:.1f})"
        return f"**{text}**" if row["attack_success"] > 10 else text

    for r in sorted(rows, key=lambda r: r.get("seed", 0)):
        per = r["per_round"]
        stop = stop_after(per, patience)
        lines.append(f"| {r.get('seed', 0)} | " + " | ".join(f"{row['attack_success']:.1f}" for row in per[1:])
                     + f" | {kept(kept_row(per, len(per) - 1))} | {stop}, {kept(kept_row(per, stop))} |")
    return "\n".join(lines)


def non_default(settings: dict, default: dict) -> dict:
    """The entries of ``settings`` that differ from ``default`` (REM's config as a dict)."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            value = non_default(value, default.get(key, {}))
            if value:
                out[key] = value
        elif value != default.get(key):
            out[key] = value
    return out


def settings_key(row: dict) -> str:
    """A record's REM settings that differ from the defaults, so that runs of the same configuration group
    together however their settings were spelled."""
    return json.dumps(non_default(row.get("settings", {}), to_dict(method_config("rem"))))


def replay(rows: list[dict], patience: int = 1) -> str:
    lines = ["| corruption | rate | seed | rounds run (rule) | score (rule) | score (all 10 rounds) | difference |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    cells: dict[tuple, list] = {}
    for row in rows:
        per = row["per_round"]
        n = stop_after(per, patience)
        rule, full = kept_score(per, n), kept_score(per, len(per) - 1)
        lines.append(f"| {row['corruption']} | {row['rate']:g} | {row.get('seed', 0)} | {n} | {rule:.1f} | {full:.1f} "
                     f"| {rule - full:+.1f} |")
        cells.setdefault((row["corruption"], row["rate"], settings_key(row)), []).append((n, rule, full))
    diffs = [rule - full for runs in cells.values() for _, rule, full in runs]
    lines.append(f"\nmean difference {statistics.mean(diffs):+.2f}, worst {min(diffs):+.1f}; "
                 f"mean rounds {statistics.mean(n for runs in cells.values() for n, _, _ in runs):.1f} of 10")
    if any(len(v) > 1 for v in cells.values()):  # several seeds: the mean of each cell over them
        lines += ["", "| corruption | rate | settings | seeds | mean rounds (rule) | mean score (rule) "
                  "| mean score (all 10) | mean difference (SE) | worst seed |", "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for (c, r, s), runs in cells.items():
            d = [rule - full for _, rule, full in runs]
            se = f" ({statistics.stdev(d) / len(d) ** 0.5:.2f})" if len(d) > 1 else ""
            lines.append(f"| {c} | {r:g} | {s} | {len(runs)} | {statistics.mean(n for n, _, _ in runs):.1f} "
                         f"| {statistics.mean(x for _, x, _ in runs):.2f} | {statistics.mean(x for _, _, x in runs):.2f} "
                         f"| {statistics.mean(d):+.2f}{se} | {min(d):+.1f} |")
    return "\n".join(lines)


#: Other test-free rules, replayed on the same proxies: (name, patience, gamma, min_gain).  A gamma of 1
#: drops the "D_f forgotten" condition; a min_gain of 0.007 is about 1.7 standard errors of the proxy
#: (keeping is about 0.94 on 2000 D_r rows: sqrt(0.94 * 0.06 / 2000) * 0.8 = 0.004).
RULES = [
    ("patience 1, once D_f <= gamma (REM's rule)", 1, 0.2, 0.0),
    ("patience 2, once D_f <= gamma", 2, 0.2, 0.0),
    ("patience 1, once D_f <= gamma, gain > 0.007", 1, 0.2, 0.007),
    ("patience 1, always", 1, 1.0, 0.0),
    ("patience 2, always", 2, 1.0, 0.0),
    ("patience 1, always, gain > 0.007", 1, 1.0, 0.007),
]


def compare_rules(rows: list[dict]) -> str:
    lines = ["| rule | mean rounds | mean difference | worst cell | cells within 2 |", "|---|---:|---:|---:|---:|"]
    for name, patience, gamma, min_gain in RULES:
        counts = [stop_after(r["per_round"], patience, gamma, min_gain) for r in rows]
        diffs = [kept_score(r["per_round"], n) - kept_score(r["per_round"], len(r["per_round"]) - 1)
                 for r, n in zip(rows, counts)]
        lines.append(f"| {name} | {statistics.mean(counts):.2f} | {statistics.mean(diffs):+.2f} | {min(diffs):+.1f} "
                     f"| {sum(d >= -2 for d in diffs)} of {len(diffs)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="poison,interclass,random")
    p.add_argument("--rates", default="0.1,0.25,0.5,1.0")
    p.add_argument("--out", help="append one JSON line per cell here")
    p.add_argument("--replay", help="print the table from recorded JSON lines, no training")
    p.add_argument("--seeds", default="0", help="discovery and unlearning seeds, one record per cell and seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="experiment override")
    p.add_argument("--method-set", action="append", default=[], metavar="KEY=VALUE", help="a setting of REM")
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--attack-success", type=float, default=None, metavar="RATE",
                   help="with --replay: only the attack success per round of the backdoor cells at this rate")
    a = p.parse_args()
    if a.replay:
        with open(a.replay) as f:
            rows = [json.loads(line) for line in f]
        if a.attack_success is not None:
            print(attack_success_per_round(rows, a.attack_success, a.patience))
            return
    else:
        if not a.out:
            p.error("give --out (to record) or --replay")
        rows = []
        for corruption in a.corruptions.split(","):
            cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                              overrides=[f"corruption.kind={corruption}", "runtime.progress=false", *a.set])
            task = prepare(cfg)
            for rate, seed in itertools.product((float(r) for r in a.rates.split(",")),
                                                (int(s) for s in a.seeds.split(","))):
                rows.append(record_cell(task, corruption, rate, seed, apply_overrides({}, a.method_set)))
                with open(a.out, "a") as f:
                    f.write(json.dumps(rows[-1]) + "\n")
                print(json.dumps(rows[-1]), flush=True)
    print(replay(rows, a.patience))
    groups: dict[str, list] = {}
    for row in rows:  # the other rules, per REM configuration
        groups.setdefault(settings_key(row), []).append(row)
    for settings, group in groups.items():
        print(f"\nREM settings {settings}:" if len(groups) > 1 else "")
        print(compare_rules(group))


if __name__ == "__main__":
    main()
