"""A training set larger than comfortable: one REM epoch from the disk store against the same set in memory.

    .venv/bin/python research/speed/store.py --images 200000 --size 64 --folder /tmp/store-bench

Writes a synthetic store of ``--images`` RGB images of ``--size`` pixels (200,000 at 64x64 = 2.46 GB as uint8;
the class is a brightness level, plus noise), then runs, each in a fresh process: one REM epoch (10 % of the
set known as D_f, one flush epoch, no selection) on a small CNN with the images (a) read from the store a
batch at a time, (b) loaded into memory first. Prints the peak resident memory (sampled every 50 ms), the
seconds of the REM epoch, images of D_tr per second, and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

RUN = "run"


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write(folder: Path, n: int, size: int) -> Path:
    from rem_unlearn.data.store import is_store, write_store

    path = folder / f"synthetic-{n}-{size}.u8"
    if is_store(path):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n) % 10

    def build(allocate):
        out = allocate((n, size, size, 3))
        for start in range(0, n, 5000):
            end = min(n, start + 5000)
            noise = np.random.default_rng(start).integers(0, 60, (end - start, size, size, 3))
            out[start:end] = (labels[start:end, None, None, None] * 19 + noise).astype(np.uint8)
        return out

    write_store(path, build)
    return path


def run(path: Path, where: str) -> dict:
    """One REM epoch in this process; the images from disk or loaded into memory first."""
    from rem_unlearn.api import unlearn_user_model
    from rem_unlearn.config import RuntimeConfig
    from rem_unlearn.data import ImageDataset
    from rem_unlearn.data.store import DiskImages
    from rem_unlearn.models import SmallCNN
    from rem_unlearn.training import Runtime

    peak = [rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    images = DiskImages.open(path)
    n = len(images)
    if where == "memory":
        images = images[torch.arange(n)]
    labels = torch.arange(n) % 10
    data = ImageDataset("synthetic", images, labels, torch.arange(n), 10, (0.5,) * 3, (0.25,) * 3, flip=True)
    data = replace(data, labels=torch.where(torch.arange(n) % 10 == 0, (labels + 1) % 10, labels))  # 10 % wrong
    forget = torch.arange(0, n, 10)
    torch.manual_seed(0)
    runtime = Runtime.from_config(RuntimeConfig(device="cpu"))
    start = time.perf_counter()
    unlearn_user_model(SmallCNN(10, 3, width=0.25), data, forget, "rem", runtime=runtime, max_utility_drop=None,
                       epochs=1, max_flush_epochs=1, select_best=False, optim={"batch_size": 256})
    seconds = time.perf_counter() - start
    stop.set()
    return {"where": where, "images": n, "seconds": seconds, "images_per_s": n / seconds, "peak_rss_mb": peak[0],
            "set_mb": n * images.shape[1] * images.shape[2] * images.shape[3] / 2**20, "threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--folder", default="/tmp/store-bench")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(f"--{RUN}", choices=("disk", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.run:
        print(json.dumps(run(Path(a.path), a.run)))
        return
    start = time.perf_counter()
    path = write(Path(a.folder), a.images, a.size)
    print(f"store: {path} ({path.stat().st_size / 2**30:.2f} GiB, written or found in "
          f"{time.perf_counter() - start:.0f} s)")
    results = {}
    for where in ("disk", "memory"):
        cmd = [sys.executable, __file__, f"--{RUN}", where, "--path", str(path)] + (
            ["--threads", str(a.threads)] if a.threads else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[where] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[where]))
    d, m = results["disk"], results["memory"]
    print("\n| images | set | where | peak resident memory | REM epoch | images/s |\n|---:|---:|---|---:|---:|---:|")
    for r in (d, m):
        print(f"| {r['images']:,} | {r['set_mb'] / 1024:.2f} GiB | {r['where']} | {r['peak_rss_mb']:.0f} MB | "
              f"{r['seconds']:.0f} s | {r['images_per_s']:.0f} |")
    print(f"\ndisk / memory: peak memory {d['peak_rss_mb'] / m['peak_rss_mb']:.2f}x, "
          f"images per second {d['images_per_s'] / m['images_per_s']:.2f}x ({d['threads']} thread(s))")


if __name__ == "__main__":
    main()
