"""`advise` on the default grid's cells: its estimates of the discovery rate and the regularity against the truth,
and whether the method it names is within 3 points of the cell's best.

Dev seeds calibrate the regularity of each corruption kind (the table's references, scripts/advice_table.py) and
compare the two candidate measures of it (`advise`'s shifted views, and the removal transfer below); the reported
seed checks the estimates and the recommendation:

    .venv/bin/python research/experiments/advise_check.py --seeds 100 --out research/records/advise_dev.jsonl
    .venv/bin/python research/experiments/advise_check.py --seeds 0 --out research/records/advise_check.jsonl
    .venv/bin/python research/experiments/advise_check.py --table research/records/advise_check.jsonl
    .venv/bin/python research/experiments/advise_check.py --compare research/records/advise_dev.jsonl

Each line of the records holds one cell's estimates (no table needed to make them); ``--table`` places each
cell with the shipped table and compares with the cell's best method in that table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

CORRUPTIONS = ("poison", "interclass", "random")
RATES = (0.1, 0.5, 1.0)


def removal_transfer(model, train, known_rows, runtime, *, seed: int = 0, lr: float = 0.005, max_steps: int = 200):
    """How far removing half of the known rows carries over to the other half, beyond a control run.

    On copies of ``model`` (BatchNorm statistics frozen): NPO on the probe half's stored labels plus
    cross-entropy on other unknown rows (SGD, momentum 0.9) until the probe half is at most 20 % right or
    ``max_steps``; the control run makes as many steps on as many unknown rows instead.  A memorised wrong
    label is fragile, so any run moves the held-out half; the transfer is what the probe's removal adds.
    """
    import copy
    import itertools

    import torch
    from torch.nn import functional as F

    from rem_unlearn.config import OptimConfig
    from rem_unlearn.methods.base import npo_removal
    from rem_unlearn.training import Batcher, Trainer, accuracy, run_epoch

    g = torch.Generator().manual_seed(seed)
    shuffled = known_rows[torch.randperm(len(known_rows), generator=g)]
    probe, held_out = shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2:]
    unknown = torch.ones(len(train), dtype=torch.bool)
    unknown[known_rows] = False
    pool = torch.nonzero(unknown).flatten()
    pool = pool[torch.randperm(len(pool), generator=g)]
    control, retain = pool[:len(probe)], pool[len(probe):]
    batcher = Batcher(train, runtime)
    reference = copy.deepcopy(model).eval().requires_grad_(False)

    def removal(forget, steps):
        work = copy.deepcopy(reference).requires_grad_(True)
        retained = (b for _ in itertools.count() for b in batcher.epoch(retain, 128))

        def loss(x, y, ids):
            xr, yr, _ = next(retained)
            with torch.no_grad():
                ce_ref = F.cross_entropy(reference(x).float(), y, reduction="none")
            ce = F.cross_entropy(work(x).float(), y, reduction="none")
            return npo_removal(ce, ce_ref, 1.0).mean() + F.cross_entropy(work(xr).float(), yr)

        limit = steps or max_steps
        optim = OptimConfig(optimizer="sgd", lr=lr, momentum=0.9, weight_decay=0.0, schedule="constant",
                            batch_size=len(forget))
        trainer = Trainer(work, optim, limit, runtime, what="regularity probe")
        while trainer.steps < limit and (steps or accuracy(work, batcher, forget) > 20.0):
            run_epoch(trainer, batcher.epoch(forget, len(forget), shuffle=False), loss, max_steps=limit)
        return work, trainer.steps

    removed, steps = removal(probe, None)
    probe_acc = (accuracy(reference, batcher, probe), accuracy(removed, batcher, probe))
    held = (accuracy(reference, batcher, held_out), accuracy(removed, batcher, held_out))
    controlled = accuracy(removal(control, max(1, steps))[0], batcher, held_out)
    drop = probe_acc[0] - probe_acc[1]
    return {"transfer": (controlled - held[1]) / drop if drop > 0 else float("nan"), "probe": probe_acc,
            "held_out": held, "held_out_control": controlled, "steps": steps}


def estimate(seeds: list[int], out: Path) -> None:
    import dataclasses
    import subprocess

    import torch

    from rem_unlearn.advise import regularity_probe
    from rem_unlearn.bench.cell import get_task
    from rem_unlearn.bench.grid import expand, load_grid
    from rem_unlearn.bench.tune import DEV_SEEDS, tuning_grid
    from rem_unlearn.corruptions.discovery import discovered_ids
    from rem_unlearn.discovery import discovery_context, rank

    torch.set_num_threads(1)
    done = {(r["seed"], r["corruption"], r["discovery_rate"]) for r in map(json.loads, out.read_text().splitlines())
            } if out.exists() else set()
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    grid = load_grid("default")
    for seed in seeds:
        dev = seed in DEV_SEEDS
        cells = expand(tuning_grid(grid, "none", {}, [seed]) if dev else
                       load_grid("default", overrides=[f"seeds=[{seed}]", "methods=[none]"]))
        for cell in cells:
            if (seed, cell.corruption, cell.discovery_rate) in done:
                continue
            start = time.perf_counter()
            task = get_task(cell.experiment)
            truth = task.corrupted.corrupted_ids
            known = discovered_ids(truth, cell.discovery_rate, seed)
            runtime = dataclasses.replace(task.runtime, progress=False)
            ctx = discovery_context(task.model, task.corrupted.train, known, runtime=runtime, pretrain=task.cfg.train)
            found = rank(ctx, "auto", seed=seed)
            regularity = regularity_probe(ctx.model, ctx.train, ctx.known_rows, ctx.runtime, seed=seed)
            transfer = removal_transfer(ctx.model, ctx.train, ctx.known_rows, ctx.runtime, seed=seed)
            n_known = len(known)
            row = {"seed": seed, "dev": dev, "corruption": cell.corruption, "discovery_rate": cell.discovery_rate,
                   "known": n_known, "corrupted": len(truth), "estimated_unfound": found.estimated_size,
                   "estimated_rate": n_known / (n_known + max(0.0, found.estimated_size)),
                   "regularity": dataclasses.asdict(regularity), "transfer": transfer, "seconds": time.perf_counter() - start,
                   "commit": commit}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{cell.corruption:<10} {cell.discovery_rate:g}: rate {row['estimated_rate']:.2f}, regularity "
                  f"{regularity.value:.2f}, transfer {transfer['transfer']:.2f} ({row['seconds']:.0f} s)", flush=True)


def table(path: Path) -> None:
    from rem_unlearn.advise import LEVELS, advice_table, place, ranking

    advice = advice_table()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    print("| corruption | discovery | estimated rate | regularity | placed at | recommended | its score | cell's best "
          "| gap | within 3 |")
    print("|---|---:|---:|---:|---|---|---:|---|---:|---|")
    hits = 0
    for r in sorted(rows, key=lambda r: (CORRUPTIONS.index(r["corruption"]), r["discovery_rate"])):
        kind, rate = place(advice, r["regularity"]["value"], r["estimated_rate"])
        chosen = ranking(advice, kind, rate)[0]["method"]
        truth = {m["method"]: m["score"] for m in ranking(advice, r["corruption"], r["discovery_rate"])}
        best = max(truth, key=truth.get)
        gap = truth[best] - truth.get(chosen, float("nan"))
        hits += gap <= 3
        print(f"| {r['corruption']} ({LEVELS[r['corruption']]}) | {r['discovery_rate']:g} | {r['estimated_rate']:.2f} "
              f"| {r['regularity']['value']:.2f} | {kind} {rate:g} | {chosen} | {truth.get(chosen, float('nan')):.1f} "
              f"| {best} {truth[best]:.1f} | {gap:.1f} | {'yes' if gap <= 3 else 'no'} |")
    print(f"\nWithin 3 points of the cell's best in {hits} of {len(rows)} cells.")


def compare(path: Path) -> None:
    """Per corruption kind: the two candidate regularity measures and the discovery-rate estimate on these cells."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    print("| corruption | discovery | shifted views (value) | removal transfer | estimated rate |")
    print("|---|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: (CORRUPTIONS.index(r["corruption"]), r["discovery_rate"])):
        print(f"| {r['corruption']} | {r['discovery_rate']:g} | {r['regularity']['value']:.2f} "
              f"| {r['transfer']['transfer']:.2f} | {r['estimated_rate']:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--out", type=Path)
    p.add_argument("--table", type=Path, help="print the placement and recommendation from these records")
    p.add_argument("--compare", type=Path, help="print both regularity measures from these records")
    a = p.parse_args()
    if a.table:
        table(a.table)
    elif a.compare:
        compare(a.compare)
    else:
        estimate(a.seeds, a.out)


if __name__ == "__main__":
    main()
