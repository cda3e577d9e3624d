"""Would the planted tasks of tests/conftest.py (1,000 images, 20 epochs) do as the efficacy task of
tests/efficacy.py (2,000 images, 30 epochs)?  They cost the suite nothing extra to train, and healing them takes
about half the time.  Prints each method's metrics and seconds, per corruption, at one thread:

    cd tests && OMP_NUM_THREADS=1 ../.venv/bin/python ../research/experiments/efficacy_planted.py [precision]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
import conftest  # noqa: E402  (the planted tasks)
import efficacy  # noqa: E402  (the efficacy task's methods and discovery rate)

import rem_unlearn as ru  # noqa: E402
from rem_unlearn.config import RuntimeConfig  # noqa: E402

torch.set_num_threads(1)
split = conftest.planted_split()  # as the session fixture `split` draws it
runtime = ru.Runtime.from_config(RuntimeConfig(progress=False, precision=sys.argv[1] if len(sys.argv) > 1 else "auto"))
out: dict = {}
for kind in efficacy.CORRUPTIONS:
    start = time.perf_counter()
    data, model, evaluate = conftest.planted(kind, split, runtime)
    print(kind, "train", round(time.perf_counter() - start), "s", flush=True)
    known = ru.discovered_ids(data.corrupted_ids, efficacy.RATE, seed=0)
    out[kind] = {}
    for method in efficacy.METHODS:
        start = time.perf_counter()
        out[kind][method] = efficacy.heal(method, model, data, known, evaluate, runtime)
        print(kind, method, round(time.perf_counter() - start), "s", out[kind][method], flush=True)
print(json.dumps(out))
