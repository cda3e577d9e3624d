"""A smoke-sized task on which REM must heal: shared by tests/test_efficacy.py and scripts/efficacy_spread.py.

The capacity ResNet-9 (width 0.25) trained on 2,000 Fashion-MNIST images, 60 of them corrupted (a
backdoor, or random labels), until it memorises them; half of the corrupted ids are known.  Every
method heals the same model with the same budget; the test split (2,000 images) scores the result.
"""

from __future__ import annotations

import torch

TRAIN, TEST, CORRUPTED, RATE, EPOCHS = 2000, 2000, 60, 0.5, 30
METHODS = ("none", "finetune", "ga", "rem", "rem-official")
CORRUPTIONS = ("poison", "random")


def measure(corruptions=CORRUPTIONS, methods=METHODS, epochs: int = EPOCHS, budget: float | None = None,
            precision: str = "auto") -> dict[str, dict[str, dict[str, float]]]:
    """{corruption: {method: {"healed", "utility", "score", "attack_success"}}} on the smoke task, with
    ``runtime.precision`` = ``precision``."""
    import rem_unlearn as ru
    from rem_unlearn.config import ModelConfig, RuntimeConfig
    from rem_unlearn.models import build_model

    g = torch.Generator().manual_seed(0)
    train = ru.load_dataset("fashion-mnist", "train")
    train = train.subset(torch.randperm(len(train), generator=g)[:TRAIN])
    test = ru.load_dataset("fashion-mnist", "test")
    test = test.subset(torch.randperm(len(test), generator=g)[:TEST])
    runtime = ru.Runtime.from_config(RuntimeConfig(precision=precision))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind in corruptions:
        data = ru.corrupt(train, kind=kind, size=CORRUPTED, seed=0)
        torch.manual_seed(0)
        model = runtime.prepare(build_model(ModelConfig(arch="resnet9", width=0.25), 1, 10, 28))
        recipe = ru.TrainConfig(epochs=epochs, augment=False, optim=ru.OptimConfig(lr=0.05, batch_size=64))
        ru.train_model(model, data.train, recipe, runtime)
        known = ru.discovered_ids(data.corrupted_ids, RATE, seed=0)
        evaluate = ru.Evaluator(data, test, runtime)
        out[kind] = {method: heal(method, model, data, known, evaluate, runtime, budget) for method in methods}
    return out


def heal(method: str, model, data, known, evaluate, runtime, budget: float | None = None) -> dict[str, float]:
    """The rounded metrics of ``model`` healed by ``method`` from the ``known`` ids ("none": as trained)."""
    import rem_unlearn as ru

    healed = model if method == "none" else ru.unlearn(
        model, data.train, known, method, runtime=runtime, max_utility_drop=None,
        **({} if budget is None else {"epochs": budget})).model
    m = evaluate(healed)
    return {k: round(m[k], 2) for k in ("healed", "utility", "score", "attack_success") if m[k] is not None}


if __name__ == "__main__":
    import json
    import time

    start = time.perf_counter()
    print(json.dumps(measure(), indent=1))
    print(f"{time.perf_counter() - start:.0f} s")
