"""Training throughput of the default model: one process with every core's thread vs one 1-thread process per core.

Why `make bench` passes ``--workers 2``: the small convolutions of the default model use a second
thread poorly, so two 1-thread processes train more images per second than one 2-thread process.

    .venv/bin/python research/speed/workers.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import torch

from throughput import images_per_second  # benchmarks/throughput.py: one step = forward, backward, SGD


def _one_thread(steps: int, start, result) -> None:
    torch.set_num_threads(1)
    images_per_second(0.375, 128, 3, True, True)  # warm-up before the common start
    start.wait()
    result.put(images_per_second(0.375, 128, steps, True, True))


def parallel(processes: int, steps: int) -> float:
    """Summed images/second of ``processes`` 1-thread processes training at the same time."""
    ctx = multiprocessing.get_context("spawn")
    start, result = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_one_thread, args=(steps, start, result)) for _ in range(processes)]
    for p in procs:
        p.start()
    total = sum(result.get() for _ in procs)
    for p in procs:
        p.join()
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    cores = os.cpu_count() or 1
    one, many = [], []
    for _ in range(a.repeats):  # alternate, so that a slow spell of a shared machine hits both
        torch.set_num_threads(cores)
        one.append(images_per_second(0.375, 128, a.steps, True, True))
        many.append(parallel(cores, a.steps))
        time.sleep(1)
    m1, mn = statistics.median(one), statistics.median(many)
    print(f"ResNet-9 width 0.375, batch 128, bf16 + channels_last, {cores} cores, median of {a.repeats}")
    print(f"  1 process x {cores} threads     {m1:7.0f} img/s   runs {', '.join(f'{v:.0f}' for v in one)}")
    print(f"  {cores} processes x 1 thread     {mn:7.0f} img/s   runs {', '.join(f'{v:.0f}' for v in many)}")
    print(f"ratio processes / threads = {mn / m1:.2f}")


if __name__ == "__main__":
    main()
