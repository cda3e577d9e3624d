"""The data path on a GPU: training images per second against a plain PyTorch loop, and one REM cell of the
paper's CIFAR-10 ResNet-9 grid on synthetic CIFAR-shaped data, projected to the whole main-table grid.

    .venv/bin/python research/speed/gpu_path.py --device cuda                # the paper's sizes
    .venv/bin/python research/speed/gpu_path.py --device cpu --train-size 2000 --train-epochs 1 \\
        --unlearn-epochs 1 --width 0.25 --steps 5                           # the script itself, on a CPU

1. Images per second of ResNet-9 (3x32x32, batch 512) trained through this package (``train_model``: the
   Batcher's tensor-resident uint8 set, normalised on the device, per-example partition masks, bf16
   autocast) against a plain loop over a ``DataLoader`` of a float ``TensorDataset`` (pinned memory,
   non-blocking copies) training the same model in the same layout and precision, without masks. Neither
   augments, so the two differ in the data path and the masks only.
2. One REM cell of the ``paper-cifar10-resnet9`` recipe (pre-training, then REM at discovery 0.5 on random
   labels with its 10-epoch budget), on ``--train-size`` synthetic images. The projection of the paper's
   main-table grid: 3 corruptions x 2 variants x 3 seeds = 18 models, and 630 unlearning runs (10 rates x
   3 corruptions x 3 seeds x 7 methods), taking every run as long as REM's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace

import torch
from torch.nn import functional as F

GRID_MODELS, GRID_RUNS = 18, 630


def synthetic(n: int, seed: int = 0):
    from rem_unlearn.data import ImageDataset

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (labels.view(n, 1, 1, 1) * 20 + torch.randint(0, 60, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return ImageDataset("synthetic-cifar", images, labels, torch.arange(n), 10, (0.49, 0.48, 0.45),
                        (0.25, 0.24, 0.26), flip=True)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def ours(device: str, width: float, n: int, steps: int) -> float:
    from rem_unlearn.config import ModelConfig, OptimConfig, RuntimeConfig, TrainConfig
    from rem_unlearn.models import build_model
    from rem_unlearn.training import Runtime, train_model

    runtime = Runtime.from_config(RuntimeConfig(device=device, progress=False))
    model = runtime.prepare(build_model(ModelConfig(arch="resnet9", width=width), 3, 10, 32))
    data = synthetic(n)
    cfg = TrainConfig(epochs=1, augment=False, optim=OptimConfig(lr=0.025, batch_size=512))
    train_model(model, data.subset(torch.arange(min(n, 512 * 2))), cfg, runtime)  # warm-up
    sync(device)
    start = time.perf_counter()
    train_model(model, data, cfg, runtime, max_steps=steps)
    sync(device)
    return min(n, steps * 512) / (time.perf_counter() - start)


def plain(device: str, width: float, n: int, steps: int) -> float:
    from rem_unlearn.config import ModelConfig, RuntimeConfig
    from rem_unlearn.models import build_model
    from rem_unlearn.training import Runtime

    runtime = Runtime.from_config(RuntimeConfig(device=device, progress=False))  # the same model and layout
    model = runtime.prepare(build_model(ModelConfig(arch="resnet9", width=width), 3, 10, 32))
    layout = torch.channels_last if runtime.channels_last else torch.contiguous_format
    data = synthetic(n)
    x = (data.images.float() / 255 - torch.tensor(data.mean).view(1, 3, 1, 1)) / torch.tensor(data.std).view(1, 3, 1, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, data.labels), batch_size=512,
                                         shuffle=True, pin_memory=device == "cuda", drop_last=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4)
    model.train()

    def epoch(limit: int) -> int:
        seen = 0
        for i, (xb, yb) in enumerate(loader):
            if i == limit:
                break
            xb = xb.to(device, non_blocking=True).contiguous(memory_format=layout)
            yb = yb.to(device, non_blocking=True)
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(xb)
        return seen

    epoch(2)
    sync(device)
    start = time.perf_counter()
    seen = epoch(steps)
    sync(device)
    return seen / (time.perf_counter() - start)


def rem_cell(device: str, width: float, n: int, train_epochs: int | None, unlearn_epochs: int) -> tuple[float, float]:
    """Seconds of pre-training and of one REM run (random labels, discovery 0.5) on the paper's recipe."""
    from rem_unlearn.api import unlearn
    from rem_unlearn.config import ExperimentConfig, from_dict
    from rem_unlearn.corruptions import corrupt
    from rem_unlearn.corruptions.discovery import discovered_ids
    from rem_unlearn.experiment import prepare
    from rem_unlearn.presets import experiment_preset

    raw = experiment_preset("paper-cifar10-resnet9")
    raw["model"]["width"] = width
    raw["corruption"] = {**raw.get("corruption", {}), "kind": "random", "size": max(10, n // 50)}
    if train_epochs:
        raw["train"]["epochs"] = train_epochs
    raw["runtime"] = {"device": device, "cache_dir": tempfile.mkdtemp(prefix="gpu-path-"), "progress": False}
    cfg: ExperimentConfig = from_dict(ExperimentConfig, raw)
    train, test = synthetic(n), synthetic(max(500, n // 10), seed=1)
    corrupted = corrupt(train, cfg.corruption)
    sync(device)
    start = time.perf_counter()
    task = prepare(cfg, data=(corrupted, test))
    sync(device)
    pretrain = time.perf_counter() - start
    forget = discovered_ids(corrupted.corrupted_ids, 0.5, 0)
    start = time.perf_counter()
    unlearn(task.model, corrupted.train, forget, "rem", runtime=replace(task.runtime, progress=False),
            pretrain=cfg.train, max_utility_drop=None, epochs=unlearn_epochs)
    sync(device)
    return pretrain, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--train-size", type=int, default=50_000)
    p.add_argument("--train-epochs", type=int, default=None, help="pre-training epochs (default: the recipe's 41)")
    p.add_argument("--unlearn-epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=50, help="optimiser steps timed for images per second")
    a = p.parse_args()
    name = torch.cuda.get_device_name() if a.device == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    n = min(a.train_size, 512 * (a.steps + 2))
    ours_ips, plain_ips = ours(a.device, a.width, n, a.steps), plain(a.device, a.width, n, a.steps)
    print(f"device: {name}; ResNet-9 width {a.width}, 3x32x32, batch 512")
    print(f"images per second: rem-unlearn {ours_ips:.0f}, plain PyTorch loop {plain_ips:.0f} "
          f"(ratio {ours_ips / plain_ips:.2f})")
    pretrain, cell = rem_cell(a.device, a.width, a.train_size, a.train_epochs, a.unlearn_epochs)
    total = GRID_MODELS * pretrain + GRID_RUNS * cell
    print(f"one model: {pretrain:.1f} s pre-training; one REM run: {cell:.1f} s "
          f"({a.train_size} images, {a.unlearn_epochs} unlearning epochs)")
    print(f"projected main-table grid ({GRID_MODELS} models, {GRID_RUNS} runs at REM's time): {total / 3600:.2f} h")


if __name__ == "__main__":
    main()
