"""Does the structure of the wrong labels decide whether the ETD model heals them by itself?

The embedded default's ETD model heals 81-90 % of random labels on its own, however many there are and
however long it trains (research/notes/results.md). Here the corrupted rows stay those of the default's
random swap (200 of 10,000, corruption seed 0); only the wrong label each of them gets changes:

* ``uniform``   -- the default: a uniformly random other class;
* ``pairflip``  -- one fixed wrong class per true class (a random derangement of the classes);
* ``two``       -- one of two fixed wrong classes per true class;
* ``nearest``   -- per image, the other class whose mean image (over the clean training set) is nearest:
                   a label an annotator could plausibly have given.

For each structure it trains the capacity and the ETD model of the default preset and prints how much of
D_c's wrong labels the capacity model fits and how much of D_c the ETD model heals (drop mode)::

    .venv/bin/python research/experiments/label_structure.py uniform pairflip --cache /tmp/label_structure
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.experiment import corrupted_data, prepare
from rem_unlearn.presets import experiment_preset
from rem_unlearn.training import accuracy

STRUCTURES = ("uniform", "pairflip", "two", "nearest")


def wrong_labels(structure: str, images: torch.Tensor, true: torch.Tensor, rows: torch.Tensor,
                 uniform: torch.Tensor, classes: int, seed: int) -> torch.Tensor:
    """The wrong label of each row in ``rows`` under ``structure`` (never the true label)."""
    g = torch.Generator().manual_seed(seed)
    y = true[rows]
    if structure == "uniform":
        return uniform
    if structure in ("pairflip", "two"):
        while True:  # a derangement: no class maps to itself
            first = torch.randperm(classes, generator=g)
            if not (first == torch.arange(classes)).any():
                break
        if structure == "pairflip":
            return first[y]
        second = (first + torch.randint(1, classes - 1, (classes,), generator=g)) % classes
        second = torch.where(second == torch.arange(classes), (second + 1) % classes, second)
        pick = torch.randint(0, 2, (len(rows),), generator=g).bool()
        return torch.where(pick, second[y], first[y])
    flat = images.flatten(1).float()
    means = torch.stack([flat[true == c].mean(0) for c in range(classes)])
    distance = torch.cdist(flat[rows], means)
    distance[torch.arange(len(rows)), y] = float("inf")
    return distance.argmin(1)


def run(structure: str, cache: str) -> dict:
    def config(variant: str) -> ExperimentConfig:
        return load_config(ExperimentConfig, base=experiment_preset("fashion-mnist"),
                           overrides=["corruption.kind=random", f"model.variant={variant}",
                                      f"runtime.cache_dir={cache}/{structure}", "runtime.progress=false"])

    cfg = config("capacity")
    corrupted, test = corrupted_data(cfg)  # the model variant does not change the data
    train, rows = corrupted.train, corrupted.corrupted_rows
    labels = train.labels.clone()
    labels[rows] = wrong_labels(structure, train.images, corrupted.true_labels, rows, train.labels[rows],
                                train.num_classes, cfg.corruption.seed)
    assert (labels[rows] != corrupted.true_labels[rows]).all()
    corrupted = replace(corrupted, train=replace(train, labels=labels))
    pairs = torch.stack([corrupted.true_labels[rows], labels[rows]], 1).unique(dim=0)
    out: dict = {"structure": structure, "label_pairs": len(pairs)}  # distinct (true, wrong): 10 for pairflip
    for variant in ("capacity", "etd"):
        start = time.perf_counter()
        task = prepare(config(variant), data=(corrupted, test))
        metrics = task.evaluate(task.model)
        batcher = task.evaluate.train_batcher
        out[variant] = {"fit": round(accuracy(task.model, batcher, rows, labels=labels[rows]), 2),
                        "healed": round(metrics["healed"], 2), "utility": round(metrics["utility"], 2),
                        "precision": task.runtime.precision, "seconds": round(time.perf_counter() - start)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("structures", nargs="+", choices=STRUCTURES)
    parser.add_argument("--cache", required=True, help="a scratch model cache (one folder per structure)")
    args = parser.parse_args()
    for structure in args.structures:
        print(json.dumps(run(structure, args.cache)), flush=True)


if __name__ == "__main__":
    main()
