"""REM at its full budget on the suite's tasks: the test metrics and the proxy's parts after every round.

For choosing how REM selects its round (the proxy), on dev tasks only.  Each (task, rate, seed)
runs REM with the given settings and ``patience=None`` through the user-model path, scores the
model after every round on the task's test split (recorded for this study only), and appends one
JSON line with the proxy's parts per round: keeping (D_r sample), D_f as stored, D_f's views.
``--replay`` then compares selection rules on the records, without training:

    OMP_NUM_THREADS=1 .venv/bin/python research/experiments/suite_rounds.py --tasks capacity-resnet9-poison \\
        --rates 0.1 --seeds 0 --out research/records/suite_rounds.jsonl
    .venv/bin/python research/experiments/suite_rounds.py --replay research/records/suite_rounds.jsonl

Uses the trained models of research/experiments/task_suite.py (seed 0).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from task_suite import WORK, code_version, load_tasks, task_data, task_runtime, train_user_model

from rem_unlearn import unlearn_user_model
from rem_unlearn.config import apply_overrides
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.metrics import Evaluator

GAMMA = 0.2
PROXY_PARTS = ("keeping", "removing", "proxy", "forget_stored", "forget_views")
TEST_PARTS = ("score", "healed", "utility", "attack_success")


def record(task: dict, rate: float, seed: int, settings: dict) -> dict:
    corrupted, test = task_data(task)
    runtime = task_runtime(task)
    model, _ = train_user_model(task, corrupted.train, runtime, WORK)
    evaluate = Evaluator(corrupted, test, runtime)
    forget = discovered_ids(corrupted.corrupted_ids, rate, seed)
    scores: dict[str, dict] = {}
    repaired = unlearn_user_model(model, corrupted.train, forget, "rem", runtime=runtime, max_utility_drop=None,
                                  **{**settings, "patience": None, "seed": seed},
                                  on_epoch=lambda m, label: scores.update({label: evaluate(m)}))
    proxies = {h["at"]: h for h in repaired.result.history if h.get("event") == "proxy"}
    return {"task": task["name"], "split": task["split"], "corruption": task["corruption"], "rate": rate,
            "seed": seed, "settings": settings, "code": code_version(), "selected": repaired.result.selected,
            "per_round": [{"label": label, **{k: scores[label][k] for k in TEST_PARTS},
                           **{k: v for k, v in proxies[label].items() if k in PROXY_PARTS}}
                          for label in scores if label in proxies]}


# ----------------------------------------------------------------------------- selection rules


def today(row: dict) -> float:
    """keeping x (1 - max(stored, views, gamma)): views below gamma do not count."""
    return row["keeping"] * (1.0 - max(row["forget_stored"], row.get("forget_views", 0.0), GAMMA))


def views_always(row: dict) -> float:
    """keeping x (1 - max(stored, gamma)) x (1 - views): D_f's views count below gamma too."""
    return row["keeping"] * (1.0 - max(row["forget_stored"], GAMMA)) * (1.0 - row.get("forget_views", 0.0))


def first_best(value):
    """The first round with the highest value (a later round must beat it): REM's selection."""
    def pick(rounds: list[dict]) -> dict:
        best = rounds[0]
        for row in rounds[1:]:
            if value(row) > value(best):
                best = row
        return best
    return pick


def last_within(z: float, retain_samples: int = 2000):
    """The last round whose proxy is within ``z`` standard errors of the best (the binomial error of keeping
    on the proxy's D_r sample): near-ties go to the round with more repair."""
    def pick(rounds: list[dict]) -> dict:
        values = [today(r) for r in rounds]
        b = max(range(len(rounds)), key=lambda i: (values[i], -i))
        if b == 0:
            return rounds[0]
        k = rounds[b]["keeping"]
        se = math.sqrt(max(k * (1 - k), 1e-4) / retain_samples) * values[b] / k
        return rounds[max(i for i in range(1, len(rounds)) if values[i] >= values[b] - z * se)]
    return pick


RULES = {"today": first_best(today), "views-always": first_best(views_always), "last-within-1se": last_within(1.0),
         "last-within-2se": last_within(2.0), "last-round": lambda rounds: rounds[-1]}


def replay(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("| task | rate | seed | " + " | ".join(RULES) + " | best round |")
    print("|---|---:|---:|" + "---|" * (len(RULES) + 1))
    totals = {name: [] for name in RULES}
    for r in rows:
        rounds = r["per_round"]
        cells = []
        for name, rule in RULES.items():
            k = rule(rounds)
            totals[name].append(k["score"])
            asr = f", asr {k['attack_success']:.1f}" if k["attack_success"] is not None else ""
            cells.append(f"{k['score']:.1f} ({k['label'].replace('round ', 'r')}{asr})")
        best = max(rounds[1:], key=lambda x: x["score"])
        print(f"| {r['task']} | {r['rate']} | {r['seed']} | " + " | ".join(cells)
              + f" | {best['score']:.1f} ({best['label']}) |")
    print("| **mean** | | | " + " | ".join(f"**{statistics.mean(v):.2f}**" for v in totals.values()) + " | |")


def attack_success_per_round(path: Path, rate: float) -> None:
    """Attack success after every round of the backdoor runs at ``rate``, and the round the proxy keeps."""
    rows = [r for r in map(json.loads, path.read_text().splitlines())
            if r["corruption"] == "poison" and r["rate"] == rate]
    n = max(len(r["per_round"]) for r in rows) - 1
    print("| task | seed | " + " | ".join(f"r{i}" for i in range(1, n + 1)) + " | kept (ASR) |")
    print("|---|---:|" + "---:|" * n + "---|")
    for r in sorted(rows, key=lambda r: (r["task"], r["seed"])):
        asr = [row["attack_success"] for row in r["per_round"][1:]]
        top = max(asr)
        k = RULES["today"](r["per_round"])
        print(f"| {r['task']} | {r['seed']} | " + " | ".join(f"**{a:.1f}**" if a == top and a > 10 else f"{a:.1f}"
                                                             for a in asr)
              + f" | {k['label']} ({k['attack_success']:.1f}) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="", help="comma-separated task names (default: every dev task)")
    p.add_argument("--rates", default="0.1,0.5")
    p.add_argument("--seeds", default="0")
    p.add_argument("--set", action="append", default=[], help="REM settings, key=value (default: its defaults)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "records" / "suite_rounds.jsonl"))
    p.add_argument("--replay", default=None, help="print the selection rules' table from these records")
    p.add_argument("--attack-success", type=float, default=None, metavar="RATE",
                   help="with --replay: attack success per round of the backdoor runs at this discovery rate")
    a = p.parse_args()
    if a.replay and a.attack_success is not None:
        return attack_success_per_round(Path(a.replay), a.attack_success)
    if a.replay:
        return replay(Path(a.replay))
    settings = apply_overrides({}, a.set)
    names = a.tasks.split(",") if a.tasks else [t["name"] for t in load_tasks() if t["split"] == "dev"]
    tasks = {t["name"]: t for t in load_tasks()}
    out = Path(a.out)
    done = {(r["task"], r["rate"], r["seed"], json.dumps(r["settings"], sort_keys=True))
            for r in map(json.loads, out.read_text().splitlines())} if out.is_file() else set()
    for name in names:
        if tasks[name]["split"] != "dev":
            raise SystemExit(f"{name} is a held-out task: selection rules are chosen on dev tasks only")
        for rate in map(float, a.rates.split(",")):
            for seed in map(int, a.seeds.split(",")):
                if (name, rate, seed, json.dumps(settings, sort_keys=True)) in done:
                    continue
                rec = record(tasks[name], rate, seed, settings)
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                last = {k: round(v, 3) for k, v in rec["per_round"][-1].items() if isinstance(v, float)}
                print(f"{name} {rate} seed {seed}: kept {rec['selected']}; round 10 {last}", flush=True)


if __name__ == "__main__":
    main()
