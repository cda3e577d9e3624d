"""REM on a model trained normally (no reserved capacity) vs REM on the paper's partitioned ResNet-9.

For each corruption of the embedded default: trains (or loads from the
cache) a plain ResNet-18 without gates, adds redirection capacity with
:func:`rem_unlearn.expand`, runs REM at each discovery rate, discards the
capacity and evaluates the user's own class.  The same REM budget runs on
the capacity-0.5 partitioned ResNet-9 (the paper's scheme).  Prints a
Markdown table (docs/any-model.md).

    .venv/bin/python experiments/any_model.py [--rates 0.1,0.5,1.0] [--epochs 1] [--width 0.25]
"""

from __future__ import annotations

import argparse

from rem_unlearn import discard, expand, unlearn
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discover
from rem_unlearn.experiment import prepare
from rem_unlearn.presets import experiment_preset

METRICS = ("healed", "utility", "score")


def task_for(corruption: str, overrides: list[str]):
    cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                      overrides=[f"corruption.kind={corruption}", "runtime.progress=false", *overrides])
    return prepare(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="poison,interclass,random")
    p.add_argument("--rates", default="0.1,0.5,1.0")
    p.add_argument("--epochs", type=float, default=1.0, help="REM budget in passes over D_tr (the benchmark's)")
    p.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    p.add_argument("--expand-width", type=float, default=0.5, help="added units per layer (fraction)")
    a = p.parse_args()
    rates = [float(r) for r in a.rates.split(",")]
    lines = ["| corruption | rate | model | healed | utility | score | REM time (s) |", "|---|---|---|---|---|---|---|"]

    def row(corruption, rate, name, m, wall) -> None:
        cells = " | ".join(f"{m[k]:.1f}" for k in METRICS)
        lines.append(f"| {corruption} | {rate} | {name} | {cells} | {wall} |")
        print(lines[-1], flush=True)

    for corruption in a.corruptions.split(","):
        plain = task_for(corruption, ["model.arch=resnet18", f"model.width={a.width}"])
        reserved = task_for(corruption, [])
        print(f"{corruption}: ResNet-18 (w {a.width}) trained in {plain.train_seconds:.0f}s, "
              f"ResNet-9 in {reserved.train_seconds:.0f}s", flush=True)
        row(corruption, "–", "ResNet-18 trained", plain.evaluate(plain.model), "–")
        row(corruption, "–", "ResNet-9 (capacity 0.5) trained", reserved.evaluate(reserved.model), "–")
        train = plain.corrupted.train
        x = plain.evaluate.train_batcher.batch(plain.corrupted.corrupted_rows[:2], augment=False)[0]
        for rate in rates:
            forget = discover(plain.corrupted.corrupted_ids, rate, seed=0)
            big = expand(plain.model, width=a.expand_width, example_input=x, num_classes=train.num_classes)
            res = unlearn(big, train, forget, "rem", runtime=plain.runtime, epochs=a.epochs)
            cleaned = discard(res.model)
            assert type(cleaned) is type(plain.model)
            row(corruption, rate, "ResNet-18 + expand, REM", plain.evaluate(cleaned, forget), f"{res.wall_time_s:.1f}")
            res9 = unlearn(reserved.model, reserved.corrupted.train, forget, "rem", runtime=reserved.runtime,
                           epochs=a.epochs)
            row(corruption, rate, "ResNet-9 (capacity 0.5), REM", reserved.evaluate(res9.model, forget),
                f"{res9.wall_time_s:.1f}")
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
