"""REM's mechanism: is the corruption redirected into theta_o2, and does dropping it heal the model?

For each corruption, trains (or loads from the cache) the model of an
experiment preset, runs REM at one discovery rate and prints, per REM round,
the accuracy on the *corrupted* labels of all corrupted samples (and of the
undiscovered ones) through theta_o1 only (drop mode) and through theta_o1 +
masked theta_o2 (the shared-mask mode REM trains in), and the drop-mode
utility on the test set (a diagnostic only: REM's selection never sees it).
Redirection happened when drop falls while masked stays high.  Ends with a Markdown table of the
trained model vs REM (healed, utility, score, attack success, wall time).

    .venv/bin/python research/experiments/rem_mechanism.py                       # poison, ResNet-9, rate 0.5
    .venv/bin/python research/experiments/rem_mechanism.py --preset fashion-mnist-vit \\
        --corruptions poison,interclass,random                          # the ViT (research/notes/vit.md)
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.nn import functional as F

from rem_unlearn.api import unlearn
from rem_unlearn.config import ExperimentConfig, apply_overrides, load_config
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.experiment import prepare
from rem_unlearn.experiment import method_overrides
from rem_unlearn.presets import experiment_preset
from rem_unlearn.models import partition
from rem_unlearn.training import accuracy, recalibrate_batchnorm


def run_one(preset: str, corruption: str, rate: float, method: dict, overrides: list[str]) -> dict:
    cfg = load_config(ExperimentConfig, base=experiment_preset(preset), overrides=[
        f"corruption.kind={corruption}", "runtime.progress=false", *overrides])
    start = time.perf_counter()
    task = prepare(cfg)
    print(f"\n## {preset}: {corruption}  (model trained or loaded in {time.perf_counter() - start:.0f}s, "
          f"training took {task.train_seconds:.0f}s)")
    corrupted = task.corrupted
    forget = discovered_ids(corrupted.corrupted_ids, rate, seed=0)
    rows = corrupted.corrupted_rows
    known = torch.isin(corrupted.train.ids[rows], forget)
    discovered, undiscovered = rows[known], rows[~known]
    batcher = task.evaluate.train_batcher
    print(f"discovery {rate}: {len(forget)} of {len(rows)} corrupted samples known")
    print("accuracy on the corrupted labels; masked = theta_o1 + theta_o2 (D_f: the shared mask, others: own); "
          "fit weight = the paper's (uncapped) redirect weight on D_f (0..2)")
    print(f"{'round':<10}{'drop: all':>11}{'masked: all':>13}{'drop: D_f':>11}{'masked: D_f':>13}"
          f"{'drop: undisc.':>15}{'masked: undisc.':>17}{'fit weight D_f':>16}{'drop: utility':>15}")
    reference: list = []

    def fit_weight(model) -> float:
        x, y, ids = batcher.batch(discovered, augment=False)
        with torch.no_grad(), task.runtime.autocast():
            with partition(model, "shared", ids=ids, shared_ids=forget):
                ce = F.cross_entropy(model(x).float(), y, reduction="none")
            with partition(reference[0], "shared", ids=ids, shared_ids=forget):
                ce_ref = F.cross_entropy(reference[0](x).float(), y, reduction="none")
        return float((2 * torch.sigmoid(-(ce - ce_ref))).mean())

    def observe(model, label: str) -> None:
        if label == "start":
            reference[:] = [copy.deepcopy(model).eval()]
        masked = copy.deepcopy(model)
        recalibrate_batchnorm(masked, batcher, torch.arange(len(corrupted.train)), mode="shared", shared_ids=forget)
        drop = lambda r: accuracy(model, batcher, r, mode="drop")  # noqa: E731
        shared = lambda r: accuracy(masked, batcher, r, mode="shared", shared_ids=forget)  # noqa: E731
        print(f"{label:<10}{drop(rows):>11.1f}{shared(rows):>13.1f}{drop(discovered):>11.1f}{shared(discovered):>13.1f}"
              f"{drop(undiscovered):>15.1f}{shared(undiscovered):>17.1f}{fit_weight(model):>16.2f}"
              f"{task.evaluate(model, forget)['utility']:>15.1f}", flush=True)

    result = unlearn(task.model, corrupted.train, forget, "rem", runtime=task.runtime,
                     max_utility_drop=None, pretrain=cfg.train,
                     on_epoch=observe, **method_overrides(cfg, method))
    print(f"selected: {result.selected}, REM took {result.wall_time_s:.1f}s")
    return {"corruption": corruption, "trained": task.evaluate(task.model, forget),
            "rem": task.evaluate(result.model, forget), "wall": result.wall_time_s,
            "train_seconds": task.train_seconds}


def markdown(rows: list[dict], rate: float) -> str:
    def f(v) -> str:
        return "–" if v is None else f"{v:.1f}"

    lines = [f"| corruption (discovery {rate:g}) | model | test acc. | healed | utility | score | ASR | time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for name, m, t in (("trained", r["trained"], r["train_seconds"]), ("REM", r["rem"], r["wall"])):
            lines.append(f"| {r['corruption']} | {name} | {f(m['test_accuracy'])} | {f(m['healed'])} | "
                         f"{f(m['utility'])} | {f(m['score'])} | {f(m['attack_success'])} | {t:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="fashion-mnist", help="experiment preset (rem_unlearn.presets)")
    p.add_argument("--corruptions", default="poison", help="comma-separated: poison,interclass,random")
    p.add_argument("--rate", type=float, default=0.5, help="discovery rate")
    p.add_argument("--epochs", type=float, default=1.0, help="REM's budget in passes over D_tr (paper: 10)")
    p.add_argument("--set", action="append", default=[], metavar="key=value", help="REM config override")
    p.add_argument("overrides", nargs="*", help="experiment overrides key=value")
    a = p.parse_args()
    method = {"epochs": a.epochs}
    method = apply_overrides(method, a.set)
    rows = [run_one(a.preset, c.strip(), a.rate, method, a.overrides) for c in a.corruptions.split(",")]
    print()
    print(markdown(rows, a.rate))


if __name__ == "__main__":
    main()
