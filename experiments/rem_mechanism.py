"""REM's mechanism on the embedded default: is the corruption redirected into theta_o2?

Prints, per REM round, the accuracy on the *corrupted* labels of all corrupted
samples through theta_o1 only (drop mode) and through theta_o1 + masked
theta_o2 (the shared-mask mode used in training), then the final metrics.

    .venv/bin/python experiments/rem_mechanism.py [--corruption poison] [--rate 0.5] [--epochs 10]
"""

from __future__ import annotations

import argparse

import torch

from rem_unlearn.api import unlearn
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discover
from rem_unlearn.experiment import prepare
from rem_unlearn.metrics import format_table
from rem_unlearn.presets import EMBEDDED_DEFAULT
from rem_unlearn.training import accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corruption", default="poison")
    p.add_argument("--variant", default="capacity")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--epochs", type=float, default=10)
    p.add_argument("overrides", nargs="*", help="experiment overrides key=value")
    a = p.parse_args()
    cfg = load_config(ExperimentConfig, base=EMBEDDED_DEFAULT, overrides=[
        f"corruption.kind={a.corruption}", f"model.variant={a.variant}", "runtime.progress=false", *a.overrides])
    task = prepare(cfg)
    corrupted = task.corrupted
    forget = discover(corrupted.corrupted_ids, a.rate, seed=0)
    rows = corrupted.corrupted_rows
    undiscovered = rows[~torch.isin(corrupted.train.ids[rows], forget)]
    batcher = task.evaluate.train_batcher
    print(f"{a.corruption}, discovery {a.rate}: {len(forget)} of {len(rows)} corrupted samples known")
    print(f"{'round':<10}{'drop: all':>11}{'masked: all':>13}{'drop: undisc.':>15}{'masked: undisc.':>17}")

    def observe(model, label: str) -> None:
        acc = lambda r, mode: accuracy(model, batcher, r, mode=mode, shared_ids=forget)  # noqa: E731
        print(f"{label:<10}{acc(rows, 'drop'):>11.1f}{acc(rows, 'shared'):>13.1f}"
              f"{acc(undiscovered, 'drop'):>15.1f}{acc(undiscovered, 'shared'):>17.1f}", flush=True)

    result = unlearn(task.model, corrupted.train, forget, "rem", runtime=task.runtime, epochs=a.epochs,
                     on_epoch=observe)
    print(f"selected: {next(h['at'] for h in result.history if h.get('event') == 'selected')}, "
          f"{result.wall_time_s:.1f}s")
    print(format_table({"trained": task.evaluate(task.model, forget), "REM": task.evaluate(result.model, forget)}))


if __name__ == "__main__":
    main()
