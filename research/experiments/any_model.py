"""REM on models trained without reserved capacity, against REM on the paper's capacity-0.5 ResNet-9.

For each corruption of the embedded default it trains (or loads from the cache)

* a plain CIFAR-style ResNet-18 (width 0.25) -- the kind of model a user has;
* ``resnet9-plain``: the capacity model's theta_o1 as a network of its own,
  trained normally (the equivalence check: ``expand`` gives it back the reserved
  half, the same four channel groups at the same width);
* the capacity-0.5 partitioned ResNet-9 (the paper's scheme),

runs REM at each discovery rate and seed (``expand`` first for the plain models,
``discard`` after), and prints a Markdown table: healed, utility, score, attack
success, and attack success after re-estimating BatchNorm statistics on D_r in
drop mode (the backdoor must not hide in BN statistics).  Every row is also
appended to ``--out`` as a JSON line, so tables can be rebuilt without rerunning.

    .venv/bin/python research/experiments/any_model.py [--rates 0.1,0.25,0.5,1.0] [--seeds 0] [--epochs 10] [--set fit=ce]

``--seeds`` are the discovery and unlearning seeds of a cell; the trained models
(training seed ``--train-seed``, default 0) are shared by all of them.  ``--table`` rebuilds
the tables from ``--out`` files and pairs two models cell by cell and seed by seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from collections import defaultdict

from rem_unlearn import discard, expand, unlearn
from rem_unlearn.config import ExperimentConfig, apply_overrides, load_config
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.experiment import prepare
from rem_unlearn.presets import experiment_preset
from rem_unlearn.report.heatmaps import REGULARITY
from rem_unlearn.report.tables import mean_sem
from rem_unlearn.training import recalibrate_batchnorm

CORRUPTIONS = tuple(c for c, _ in REGULARITY)  # high to low regularity, as the heatmaps

MODELS = {  # name -> (experiment overrides, expand arguments or None for the partitioned model)
    "ResNet-18 + expand": (["model.arch=resnet18", "model.width=0.25"], {"width": 0.5}),
    "ResNet-9 plain + expand": (["model.arch=resnet9-plain"],
                                {"width": 1.0, "layers": ["conv1.0", "conv2.0", "conv3.0", "conv4.0"]}),
    "ResNet-9 capacity 0.5": ([], None),
}


def task_for(corruption: str, overrides: list[str]):
    cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                      overrides=[f"corruption.kind={corruption}", "runtime.progress=false", *overrides])
    return prepare(cfg)


def run_cell(task, how: dict | None, rate: float, seed: int, method: str, epochs: float,
             settings: dict | None = None) -> dict:
    train = task.corrupted.train
    forget = discovered_ids(task.corrupted.corrupted_ids, rate, seed=seed)
    model = task.model
    if how is not None:
        x = task.evaluate.train_batcher.batch(task.corrupted.corrupted_rows[:2], augment=False)[0]
        model = expand(task.model, example_input=x, num_classes=train.num_classes, seed=seed, **how)
    result = unlearn(model, train, forget, method, runtime=task.runtime,
                     max_utility_drop=None, epochs=epochs, seed=seed, **(settings or {}))
    final = discard(result.model) if how is not None else result.model
    metrics = task.evaluate(final, forget)
    recalibrated = copy.deepcopy(final)
    recalibrate_batchnorm(recalibrated, task.evaluate.train_batcher, train.rows_except(train.rows_of(forget)))
    after = task.evaluate(recalibrated, forget)
    rounds = sum(1 for h in result.history if h.get("event") == "round")
    return {**{k: metrics[k] for k in ("healed", "utility", "score", "attack_success")},
            "asr_bn": after["attack_success"], "score_bn": after["score"], "wall": result.wall_time_s,
            "rounds": rounds, "selected": result.selected}


def fmt(v) -> str:
    return "–" if v is None else f"{v:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="poison,interclass,random")
    p.add_argument("--rates", default="0.1,0.25,0.5,1.0")
    p.add_argument("--seeds", default="0", help="discovery + unlearning seeds per cell")
    p.add_argument("--train-seed", type=int, default=0, help="the trained models' training seed (train.seed)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated names of MODELS")
    p.add_argument("--method", default="rem")
    p.add_argument("--epochs", type=float, default=10.0, help="REM's budget in passes over D_tr (the paper's 10)")
    p.add_argument("--out", default="any_model.jsonl", help="JSON lines of every row (appended)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the method's config, e.g. fit=ce (repeatable)")
    p.add_argument("--table", nargs="+", metavar="JSONL",
                   help="print the tables of these --out files (all their rows, every seed) instead of running")
    p.add_argument("--compare", default="ResNet-9 plain + expand,ResNet-9 capacity 0.5", metavar="A,B",
                   help="with --table: the two models to pair cell by cell and seed by seed (A minus B)")
    a = p.parse_args()
    if a.table:
        rows = [json.loads(line) for path in a.table for line in open(path) if line.strip()]
        print(table(rows) + "\n")
        print(paired(rows, *a.compare.split(",")))
        return
    settings = apply_overrides({}, a.set)  # the CLI's key=value parser (TOML values)
    rates = [float(r) for r in a.rates.split(",")]
    seeds = [int(s) for s in a.seeds.split(",")]
    names = [n.strip() for n in a.models.split(",")]
    rows: list[dict] = []
    for corruption in a.corruptions.split(","):
        for name in names:
            overrides, how = MODELS[name]
            task = task_for(corruption, [*overrides, f"train.seed={a.train_seed}"])
            trained = task.evaluate(task.model)
            print(f"{corruption} / {name}: trained in {task.train_seconds:.0f}s, healed {trained['healed']:.1f}, "
                  f"utility {trained['utility']:.1f}", flush=True)
            for rate in rates:
                for seed in seeds:
                    row = {"corruption": corruption, "model": name, "rate": rate, "seed": seed,
                           "train_seed": a.train_seed, "method": a.method,
                           "epochs": a.epochs, "settings": settings,
                           **run_cell(task, how, rate, seed, a.method, a.epochs, settings)}
                    rows.append(row)
                    with open(a.out, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    print()
    print(table(rows))


def table(rows: list[dict]) -> str:
    """Mean over seeds per (corruption, rate, model [settings]), plus each model's mean over its cells."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        tag = " ".join(f"{k}={v}" for k, v in sorted(r.get("settings", {}).items()))
        cells[(r["corruption"], r["rate"], r["model"] + (f" [{tag}]" if tag else ""))].append(r)
    keys = ("healed", "utility", "score", "attack_success", "asr_bn", "wall", "rounds")
    lines = ["| corruption | rate | model | healed | utility | score | attack success | ASR after BN re-estimation "
             "| REM time (s) | rounds | seeds |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    per_model: dict[str, list[float]] = defaultdict(list)
    order = {m: i for i, m in enumerate(MODELS)}
    for (corruption, rate, model), group in sorted(cells.items(), key=lambda kv: (
            order.get(kv[1][0]["model"], len(order)), kv[0][2], CORRUPTIONS.index(kv[0][0]), kv[0][1])):
        mean = {k: (statistics.mean(r[k] for r in group) if group[0][k] is not None else None) for k in keys}
        per_model[model].append(mean["score"])
        lines.append(f"| {corruption} | {rate:g} | {model} | " + " | ".join(fmt(mean[k]) for k in keys) +
                     f" | {len(group)} |")
    lines.append("")
    lines += [f"- {model}: mean score {statistics.mean(v):.2f} over {len(v)} cells" for model, v in per_model.items()]
    return "\n".join(lines)


def paired(rows: list[dict], a: str, b: str) -> str:
    """Score of model ``a`` minus model ``b`` per (corruption, rate), paired by seed (same known ids) and
    training seed (rows without one were trained with seed 0)."""
    score = {(r["corruption"], r["rate"], (r.get("train_seed", 0), r["seed"]), r["model"]): r["score"]
             for r in rows if not r.get("settings")}
    cells = sorted({(c, rate) for c, rate, _, m in score if m == a}, key=lambda k: (CORRUPTIONS.index(k[0]), k[1]))
    lines = [f"| corruption | rate | {a} | {b} | difference (mean ± SEM over seeds) | per (training seed, seed) "
             "| seeds |",
             "|---|---:|---:|---:|---:|---|---:|"]
    means = []
    for c, rate in cells:
        seeds = sorted(s for cc, rr, s, m in score if (cc, rr, m) == (c, rate, a) and (c, rate, s, b) in score)
        if not seeds:
            continue
        diff = [score[(c, rate, s, a)] - score[(c, rate, s, b)] for s in seeds]
        mean, sem = mean_sem(diff)
        means.append(mean)
        lines.append(f"| {c} | {rate:g} | {statistics.mean(score[(c, rate, s, a)] for s in seeds):.1f} | "
                     f"{statistics.mean(score[(c, rate, s, b)] for s in seeds):.1f} | "
                     f"{mean:+.1f} ± {sem:.1f} | "
                     f"{', '.join(f't{t}s{sd} {d:+.1f}' for (t, sd), d in zip(seeds, diff))} | "
                     f"{len(seeds)} |")
    lines.append(f"\nmean difference over {len(means)} cells: {statistics.mean(means):+.2f}; worst cell "
                 f"{min(means):+.1f}" if means else "\nno paired cells")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
