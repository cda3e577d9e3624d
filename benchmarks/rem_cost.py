"""What REM costs, measured in one run on this machine.

(a) one REM repair step / one plain training step, same model and batch size.  A repair step is a
    shared-mask pass with a reference pass on the D_tr batch (the redirect term) plus a drop-mode
    pass with a reference pass on a D_f mini-batch (the removal term, every step);
(b) REM's total unlearning wall time at the paper's 10-round budget, with the stopping rule and with
    every round, / retraining the same model from scratch on D_r with the pre-training recipe; and the
    score of both, so that what the stopping rule saves can be read next to what it costs.

    .venv/bin/python benchmarks/rem_cost.py [--corruption poison] [--rate 0.5] [--epochs 10]
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
    x, y, ids = batcher.batch(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:batch])
    cfg = REMConfig()
    cfg.optim.batch_size = batch
    known = train.rows_of(forget_ids)[:cfg.removal_batch_size]
    xf, yf, _ = batcher.batch(known)
    rem = REM(cfg)

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps

    plain_trainer = Trainer(model, cfg.optim, 10**6, rt)
    rem_trainer = Trainer(model, cfg.optim, 10**6, rt)

    def plain() -> None:
        with rt.autocast(), partition(model, "own", ids=ids):
            loss = F.cross_entropy(model(x), y)
        plain_trainer.step(loss)

    def rem_step() -> None:
        loss = rem.repair_loss(model, reference, x, y, ids, forget_ids, rt)
        rem_trainer.step(loss + rem.removal_step_loss(model, reference, xf, yf, rt))

    return timed(rem_step), timed(plain)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruption", default="poison")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--epochs", type=float, default=10.0, help="REM's budget in repair epochs (the paper's 10)")
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    cfg = load_config(ExperimentConfig, base=EMBEDDED_DEFAULT,
                      overrides=[f"corruption.kind={a.corruption}", "runtime.progress=false"])
    task = prepare(cfg)
    forget = discover(task.corrupted.corrupted_ids, a.rate, seed=0)
    rem_s, plain_s = per_step(task, forget, cfg.train.optim.batch_size, a.steps)
    print(f"(a) REM repair step {1000 * rem_s:.1f} ms / plain step {1000 * plain_s:.1f} ms = {rem_s / plain_s:.2f}")

    runs = {}
    for name, patience in (("with the stopping rule", REMConfig().patience), ("every round", None)):
        result = unlearn(task.model, task.corrupted.train, forget, "rem", runtime=task.runtime, epochs=a.epochs,
                         patience=patience)
        rounds = sum(1 for h in result.history if h.get("event") == "round")
        runs[name] = (result.wall_time_s, rounds, task.evaluate(result.model, forget)["score"], result.selected)
    train = task.corrupted.train
    retain = train.subset(train.rows_except(train.rows_of(forget)))
    fresh = task.runtime.prepare(type(task.model)(**task.model.arch))
    partition_state(fresh).p_mem = partition_state(task.model).p_mem
    start = time.perf_counter()
    train_model(fresh, retain, cfg.train, task.runtime)
    retrain_s = time.perf_counter() - start
    for name, (wall, rounds, score, selected) in runs.items():
        print(f"(b) REM {name}: {wall:.1f} s ({rounds} of {a.epochs:g} rounds, kept {selected}, score {score:.2f}) / "
              f"retrain on D_r {retrain_s:.1f} s = {wall / retrain_s:.2f}")


if __name__ == "__main__":
    main()
