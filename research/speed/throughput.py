"""Training images/second of the default model: fp32 vs bf16 autocast + channels_last.

    .venv/bin/python research/speed/throughput.py [--width 0.375] [--batch 128] [--steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from rem_unlearn.models import ResNet9, partition


def images_per_second(width: float, batch: int, steps: int, bf16: bool, channels_last: bool, size: int = 28) -> float:
    torch.manual_seed(0)
    model = ResNet9(10, 1, width=width)
    x = torch.randn(batch, 1, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    ids = torch.arange(batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), partition(model, "own", ids=ids):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--width", type=float, default=0.375)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    print(f"ResNet-9 width {a.width}, batch {a.batch}, 28x28x1, {torch.get_num_threads()} threads")
    results = {}
    for name, bf16, cl in [("fp32", False, False), ("fp32+channels_last", False, True),
                           ("bf16", True, False), ("bf16+channels_last", True, True)]:
        results[name] = images_per_second(a.width, a.batch, a.steps, bf16, cl)
        print(f"  {name:<20} {results[name]:8.0f} img/s   x{results[name] / results['fp32']:.2f} vs fp32")
    print(f"ratio bf16+channels_last / fp32 = {results['bf16+channels_last'] / results['fp32']:.2f}")


if __name__ == "__main__":
    main()
