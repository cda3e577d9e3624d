"""One suite task, several REM settings, the proxy's retain accuracy after every round: where utility goes.

    OMP_NUM_THREADS=2 .venv/bin/python research/experiments/suite_probe.py hf-vit-adamw-poison 0.1 \\
        '{"adam": {"optim": {"optimizer": "adam", "lr": 1e-4}},
          "mlp-only": {"optim": {"optimizer": "adam", "lr": 1e-4},
                       "expand": {"expand_layers": ["hf.vit.layers.0.mlp.fc1", "hf.vit.layers.1.mlp.fc1"]}},
          "no-flush": {"optim": {"optimizer": "adam", "lr": 1e-4}, "flush": false}}'

Each setting is a dict of method config fields, plus "method" (default rem) and "expand" (arguments of
``unlearn_user_model``'s expansion).  It prints the test score of the returned model and, per round, the
proxy's keeping (retain accuracy on known data, %) and removing (D_f accuracy, %).  Uses the trained models
of research/experiments/task_suite.py (seed 0).
"""

from __future__ import annotations

import json
import sys
import time

from task_suite import WORK, load_tasks, task_data, task_runtime, train_user_model

from rem_unlearn import unlearn_user_model
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.metrics import Evaluator


def main() -> None:
    name, rate, settings = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
    task = next(t for t in load_tasks() if t["name"] == name)
    corrupted, test = task_data(task)
    runtime = task_runtime(task)
    model, _ = train_user_model(task, corrupted.train, runtime, WORK)
    evaluate = Evaluator(corrupted, test, runtime)
    trained = evaluate(model)
    forget = discovered_ids(corrupted.corrupted_ids, rate, 0)
    for label, cfg in settings.items():
        cfg = dict(cfg)
        method, expansion = cfg.pop("method", "rem"), cfg.pop("expand", {})
        start = time.perf_counter()
        repaired = unlearn_user_model(model, corrupted.train, forget, method, runtime=runtime, max_utility_drop=None,
                                      **expansion, **cfg)
        m = evaluate(runtime.prepare(repaired.model).eval(), forget)
        rounds = [(h["at"], round(100 * h["keeping"], 1), round(100 * h["removing"]))
                  for h in repaired.result.history if h.get("event") == "proxy"]
        print(f"{label:<20} score {m['score']:.1f} healed {m['healed']:.1f} utility {m['utility']:.1f} "
              f"(trained {trained['utility']:.1f}) attack success {m.get('attack_success')} "
              f"kept {repaired.result.selected} {time.perf_counter() - start:.0f}s\n    {rounds}", flush=True)


if __name__ == "__main__":
    main()
