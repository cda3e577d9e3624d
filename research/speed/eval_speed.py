"""Evaluating a trained model: exported (theta_o2 cut away) vs the partitioned model in drop mode.

Prints the wall time of one full evaluation (healed, utility, ASR, forget/retain
accuracy) each way, their ratio, and whether the metrics are identical.

    .venv/bin/python research/speed/eval_speed.py [--corruptions poison,random]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

from rem_unlearn import metrics
from rem_unlearn.config import ExperimentConfig, load_config
from rem_unlearn.experiment import prepare
from rem_unlearn.presets import EMBEDDED_DEFAULT


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="poison,random")
    a = p.parse_args()
    for kind in a.corruptions.split(","):
        cfg = load_config(ExperimentConfig, base=EMBEDDED_DEFAULT,
                          overrides=[f"corruption.kind={kind}", "runtime.progress=false"])
        task = prepare(cfg)
        forget = task.corrupted.corrupted_ids[:100]
        task.evaluate(task.model, forget)  # warm-up
        start = time.perf_counter()
        exported = task.evaluate(task.model, forget)
        t_exported = time.perf_counter() - start
        with mock.patch.object(metrics, "inference_model", lambda model, runtime: model):
            start = time.perf_counter()
            drop = task.evaluate(task.model, forget)
            t_drop = time.perf_counter() - start
        same = "identical metrics" if exported == drop else f"metrics differ: {exported} vs {drop}"
        print(f"{kind}: exported {t_exported:.2f}s, drop mode {t_drop:.2f}s, ratio {t_drop / t_exported:.2f}x; {same}")


if __name__ == "__main__":
    main()
