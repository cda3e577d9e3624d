"""What REM costs, measured in one run on this machine.

(a) one REM repair step / one plain training step, same model, batch size and batches.  A repair step
    is a shared-mask pass with a reference pass on the D_tr batch (the redirect term) plus, when the
    batch holds D_f rows, a drop-mode pass with a reference pass on those rows (the removal term);
(b) REM's total unlearning wall time at the paper's 10-round budget, with the stopping rule and with
    every round, / retraining the same model from scratch on D_r with the pre-training recipe; and the
    score of both, so that what the stopping rule saves can be read next to what it costs.

    .venv/bin/python research/speed/rem_cost.py [--corruption poison] [--rate 0.5] [--epochs 10] [--seed 0]
                                            [--set KEY=VALUE]

``--seed`` is the discovery and unlearning seed (the trained model and the retrain's recipe stay the same).
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
from rem_unlearn.methods.registry import method_config
from rem_unlearn.methods.rem import REM
from rem_unlearn.models import partition, partition_state
from rem_unlearn.presets import EMBEDDED_DEFAULT
from rem_unlearn.training import Batcher, Trainer, train_model


def per_step(task, forget_ids: torch.Tensor, batch: int, steps: int, settings: dict) -> tuple[float, float]:
    """Mean time of a REM repair step and of a plain step over the same ``steps`` shuffled D_tr batches,
    so that batches holding D_f rows come as often as in a real epoch."""
    rt = task.runtime
    model = copy.deepcopy(task.model).train()
    partition_state(model).p_mem = 0.2
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    train = task.corrupted.train
    batcher = Batcher(train, rt)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    batches = [batcher.batch(order[i * batch:(i + 1) * batch]) for i in range(steps)]
    cfg = method_config("rem-lab", settings)
    cfg.optim.batch_size = batch
    known = batcher.batch(train.rows_of(forget_ids)[:cfg.removal_batch_size])
    rem = REM(cfg)
    routed = forget_ids.to(rt.device)

    def timed(fn) -> float:
        for x, y, ids in batches[:3]:
            fn(x, y, ids)
        start = time.perf_counter()
        for x, y, ids in batches:
            fn(x, y, ids)
        return (time.perf_counter() - start) / steps

    plain_trainer = Trainer(model, cfg.optim, 10**6, rt)
    rem_trainer = Trainer(model, cfg.optim, 10**6, rt)

    def plain(x, y, ids) -> None:
        with rt.autocast(), partition(model, "own", ids=ids):
            loss = F.cross_entropy(model(x), y)
        plain_trainer.step(loss)

    def rem_step(x, y, ids) -> None:
        loss = rem.repair_loss(model, reference, x, y, ids, routed, rt)
        if cfg.mechanics.removal_every_step:
            loss = loss + rem.removal_step_loss(model, reference, known[0], known[1], rt)
        rem_trainer.step(loss)

    return timed(rem_step), timed(plain)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruption", default="poison")
    p.add_argument("--rate", type=float, default=0.5)
    p.add_argument("--epochs", type=float, default=10.0, help="REM's budget in repair epochs (the paper's 10)")
    p.add_argument("--steps", type=int, default=40, help="timed steps (real shuffled D_tr batches)")
    p.add_argument("--seed", type=int, default=0, help="discovery and unlearning seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of REM's config (rem-lab), e.g. mechanics.removal_every_step=false (repeatable)")
    a = p.parse_args()
    cfg = load_config(ExperimentConfig, base=EMBEDDED_DEFAULT,
                      overrides=[f"corruption.kind={a.corruption}", "runtime.progress=false"])
    task = prepare(cfg)
    forget = discovered_ids(task.corrupted.corrupted_ids, a.rate, seed=a.seed)
    settings = apply_overrides({"seed": a.seed}, a.set)
    rem_s, plain_s = per_step(task, forget, cfg.train.optim.batch_size, a.steps, settings)
    print(f"(a) REM repair step {1000 * rem_s:.1f} ms / plain step {1000 * plain_s:.1f} ms = {rem_s / plain_s:.2f}")

    runs = {}
    for name, patience in (("with the stopping rule patience=1", 1), ("every round (the default)", None)):
        result = unlearn(task.model, task.corrupted.train, forget, "rem-lab", runtime=task.runtime,
                         max_utility_drop=None, epochs=a.epochs,
                         **{**settings, "patience": patience})
        rounds = sum(1 for h in result.history if h.get("event") == "round")
        runs[name] = (result.wall_time_s, rounds, task.evaluate(result.model, forget), result.selected)
    train = task.corrupted.train
    retain = train.subset(train.rows_except(train.rows_of(forget)))
    fresh = task.runtime.prepare(type(task.model)(**task.model.arch))
    partition_state(fresh).p_mem = partition_state(task.model).p_mem
    start = time.perf_counter()
    train_model(fresh, retain, cfg.train, task.runtime)
    retrain_s = time.perf_counter() - start
    for name, (wall, rounds, metrics, selected) in runs.items():
        asr = metrics.get("attack_success")
        quality = f"score {metrics['score']:.2f}" + ("" if asr is None else f", attack success {asr:.1f} %")
        print(f"(b) REM {name}: {wall:.1f} s ({rounds} of {a.epochs:g} rounds, kept {selected}, {quality}) / "
              f"retrain on D_r {retrain_s:.1f} s = {wall / retrain_s:.2f}")


if __name__ == "__main__":
    main()
