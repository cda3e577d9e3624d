"""What the benchmark claims, checked on any machine: on a smoke-sized task REM heals a planted backdoor and
planted random labels, and every method's metrics stay within bands measured across CPU numerics.

The task (tests/efficacy.py) trains once per corruption and heals it with every method at its defaults, each
corruption in a 1-thread pytest worker of its own, side by side (about 2 minutes on 2 cores with AMX, 5.6 in
fp32 on an AVX2-only CPU).  The bands in tests/data/efficacy_bands.json are the lowest and highest values seen
over several numerics configurations (oneDNN's and ATen's instruction sets, the thread count), widened by a margin,
for each autocast the default runtime picks: bf16 on a CPU with native bf16, fp32 on one without;
scripts/efficacy_spread.py measures them (docs/benchmark.md, "What the tests check on every machine").  The
orderings below hold with margin in every configuration measured; what did not is said.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import efficacy

BANDS = Path(__file__).resolve().parent / "data" / "efficacy_bands.json"


@functools.cache
def measured(kind: str) -> dict:
    """The task's metrics for one corruption, measured once per process.  ``make test`` runs two 1-thread pytest
    workers, and each corruption's tests form an xdist group, so the two corruptions train side by side."""
    from rem_unlearn.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError as err:
        pytest.skip(f"the embedded Fashion-MNIST is not available here: {err}")
    return efficacy.measure((kind,))[kind]  # at the worker's threads: the bands span 1 and 2


@pytest.mark.xdist_group("efficacy-poison")
def test_both_rems_remove_the_backdoor_that_finetuning_keeps() -> None:
    poison = measured("poison")
    # The trained model's attack success is 83.7-98.0 % over the configurations measured, Finetune's 60.0-98.0 %
    # (both lowest with oneDNN capped at AVX and ATen's scalar kernels: a CPU with AVX but not AVX2).
    assert poison["none"]["attack_success"] > 75 and poison["finetune"]["attack_success"] > 50, poison
    for rem in ("rem", "rem-official"):
        assert poison[rem]["attack_success"] < 25, (rem, poison[rem])
        assert poison[rem]["healed"] >= poison["none"]["healed"] + 45, (rem, poison)
        assert poison[rem]["score"] >= poison["finetune"]["score"] + 30, (rem, poison)


@pytest.mark.xdist_group("efficacy-random")
def test_both_rems_heal_memorised_random_labels() -> None:
    random = measured("random")
    assert random["none"]["healed"] <= 10, random  # the trained model fits the wrong labels
    for rem in ("rem", "rem-official"):
        assert random[rem]["healed"] >= 50, (rem, random[rem])
        assert random[rem]["utility"] >= random["none"]["utility"] - 8, (rem, random)
    # The paper's REM also beats Finetune and GA here; REM's score against Finetune flips with the thread count
    # (48.0 / 62.1 against 52.0 / 50.2: at one thread its proxy keeps round 1 in a near-tie), so it is not asserted.
    assert random["rem-official"]["score"] >= max(random["finetune"]["score"], random["ga"]["score"]) + 5, random


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.xdist_group(f"efficacy-{kind}"))
                                  for kind in efficacy.CORRUPTIONS])
def test_every_metric_stays_within_the_bands_measured_across_cpu_numerics(kind) -> None:
    from rem_unlearn.training import Runtime

    methods = measured(kind)
    precision = Runtime.from_config().precision  # what measure() ran with: bf16 where the CPU has it, else fp32
    measured_bands = json.loads(BANDS.read_text())["bands"]
    if precision not in measured_bands:
        pytest.skip(f"no bands measured for {precision} autocast (only {', '.join(sorted(measured_bands))})")
    bands = measured_bands[precision][kind]
    assert set(bands) == set(methods) and all(set(bands[m]) == set(methods[m]) for m in methods)
    outside = [f"{kind} {method} {metric}: {value:.2f} not in [{lo}, {hi}]"
               for method, metrics in methods.items() for metric, value in metrics.items()
               for lo, hi in [bands[method][metric]] if not lo <= value <= hi]
    assert not outside, "outside the bands of tests/data/efficacy_bands.json (scripts/efficacy_spread.py):\n" + \
        "\n".join(outside)
