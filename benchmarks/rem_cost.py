"""What REM costs, measured in one run on this machine.

(a) one REM repair step / one plain training step, same model and batch size;
(b) REM's total unlearning wall time / retraining the same model from scratch on D_r
    with the pre-training recipe (the trained model comes from the cache or is trained first).

    .venv/bin/python benchmarks/rem_cost.py [--epochs 1,10] [--corruption poison] [--rate 0.5]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.nn import functional as F

from rem_unlearn.api import unlearn
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.corruptions import discover
from rem_unlearn.experiment import prepare
from rem_unlearn.methods.rem import REM, REMConfig
from rem_unlearn.models import partition, partition_state
from rem_unlearn.presets import EMBEDDED_DEFAULT
from rem_unlearn.training import Batcher, Trainer, train_model


def per_step(task, forget_ids: torch.Tensor, batch: int, steps: int) -> tuple[float, float]:
    rt = task.runtime
    model = copy.deepcopy(task.model).train()
    partition_state(model).p_mem = 0.2
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    train = task.corrupted.train
    batcher = Batcher(train, rt)
    # a batch holding D_f samples in the proportion of D_f in D_tr
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:batch]
    x, y, ids = batcher.batch(rows)
    rem = REM(REMConfig())
    cfg = REMConfig().optim
    cfg.batch_size = batch

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps

    plain_trainer = Trainer(model, cfg, 10**6, rt)
    rem_trainer = Trainer(model, cfg, 10**6, rt)

    def plain() -> None:
        with rt.autocast(), partition(model, "own", ids=ids):
            loss = F.cross_entropy(model(x), y)
        plain_trainer.step(loss)

    def rem_step() -> None:
        rem_trainer.step(rem.repair_loss(model, reference, x, y, ids, forget_ids, rt))

    return timed(rem_step), timed(plain)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corruption", default="poison")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--epochs", default="1,10",
                   help="comma-separated REM budgets in repair epochs (1: the default grid's, 10: the paper's)")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    cfg = load_config(ExperimentConfig, base=EMBEDDED_DEFAULT,
                      overrides=[f"corruption.kind={a.corruption}", "runtime.progress=false"])
    task = prepare(cfg)
    forget = discover(task.corrupted.corrupted_ids, a.rate, seed=0)
    rem_s, plain_s = per_step(task, forget, cfg.train.optim.batch_size, a.steps)
    print(f"(a) REM repair step {1000 * rem_s:.1f} ms / plain step {1000 * plain_s:.1f} ms "
          f"= {rem_s / plain_s:.2f}  (target <= 1.5; the official scheme is about 2)")

    budgets = [float(e) for e in a.epochs.split(",")]
    rem_times = {e: unlearn(task.model, task.corrupted.train, forget, "rem", runtime=task.runtime,
                            epochs=e).wall_time_s for e in budgets}
    train = task.corrupted.train
    retain = train.subset(train.rows_except(train.rows_of(forget)))
    fresh = task.runtime.prepare(type(task.model)(**task.model.arch))
    partition_state(fresh).p_mem = partition_state(task.model).p_mem
    start = time.perf_counter()
    train_model(fresh, retain, cfg.train, task.runtime)
    retrain_s = time.perf_counter() - start
    for e, rem_total in rem_times.items():
        print(f"(b) REM total {rem_total:.1f} s ({e:g} repair epoch(s) + flush + selection) / "
              f"retrain on D_r {retrain_s:.1f} s = {rem_total / retrain_s:.2f}  (target <= 0.3)")


if __name__ == "__main__":
    main()
