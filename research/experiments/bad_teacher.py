"""Why Bad Teacher does not heal label corruptions: what it does to D_f's outputs, round by round.

Bad Teacher pulls D_f's outputs towards those of a randomly initialised network.
On the capacity model of the embedded default (seed 0) this script runs it for
``--epochs`` passes and prints, after every round, on the known D_f (drop mode,
no augmentation): the accuracy on the stored (corrupted) labels, the mean top
probability, the mean probability of the corrupted label and of the true label,
and the test metrics (for this study only: the method's selection never sees
them).  The last row is the round the method's own proxy keeps.

    .venv/bin/python research/experiments/bad_teacher.py                     # random and interclass at 1.0, ~5 min
    .venv/bin/python research/experiments/bad_teacher.py --cells poison:1.0 --epochs 3
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from rem_unlearn import unlearn
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.experiment import prepare
from rem_unlearn.presets import experiment_preset
from rem_unlearn.training import Batcher


def forget_outputs(model, batcher: Batcher, rows: torch.Tensor, true_labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and mean probabilities on ``rows`` (stored labels = the corrupted ones)."""
    was_training = model.training
    model.eval()
    with torch.inference_mode(), batcher.runtime.autocast():
        x, y, _ = batcher.batch(rows, augment=False)
        p = F.softmax(model(x).float(), dim=1)
    model.train(was_training)
    at = torch.arange(len(rows))
    return {"forget_acc": 100 * float((p.argmax(1) == y).float().mean()),
            "top_p": float(p.max(1).values.mean()),
            "p_corrupted": float(p[at, y].mean()),
            "p_true": float(p[at, true_labels.to(y.device)].mean())}


def run_cell(corruption: str, rate: float, epochs: int) -> str:
    cfg = load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                      overrides=[f"corruption.kind={corruption}", "runtime.progress=false"])
    task = prepare(cfg)
    c = task.corrupted
    forget = discovered_ids(c.corrupted_ids, rate, seed=0)
    rows = c.train.rows_of(forget)
    batcher = task.evaluate.train_batcher  # the evaluator's: the training set, no augmentation
    true = c.true_labels[rows]
    lines = [f"\n### {corruption}, discovery {rate:g}, {epochs} passes\n",
             "| round | D_f acc (corrupted labels) | mean top p | mean p(corrupted) | mean p(true) | healed | utility | score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def row(model, label: str) -> None:
        o, m = forget_outputs(model, batcher, rows, true), task.evaluate(model)
        lines.append(f"| {label} | {o['forget_acc']:.1f} | {o['top_p']:.3f} | {o['p_corrupted']:.3f} | "
                     f"{o['p_true']:.3f} | {m['healed']:.1f} | {m['utility']:.1f} | {m['score']:.1f} |")

    torch.manual_seed(0)  # the bad teacher's kind of network, drawn reproducibly
    fresh = task.runtime.prepare(type(task.model)(**task.model.arch))
    row(fresh, "a random network (the bad teacher's kind)")
    result = unlearn(task.model, c.train, forget, "bad-teacher", runtime=task.runtime,
                     max_utility_drop=None, epochs=epochs,
                     on_epoch=row)
    lines.append(f"\nkept by the proxy: {result.selected}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="random:1.0,interclass:1.0", help="corruption:rate, comma-separated")
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    for cell in a.cells.split(","):
        corruption, rate = cell.split(":")
        print(run_cell(corruption, float(rate), a.epochs), flush=True)


if __name__ == "__main__":
    main()
