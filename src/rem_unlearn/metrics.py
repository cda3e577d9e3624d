"""Healing, utility and their product, as defined in docs/paper.md §3 (intended semantics).

All metrics run the model in *drop* mode on non-augmented images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .corruptions.base import CorruptedData
from .data.base import ImageDataset
from .models import discard, gates
from .training import Batcher, Runtime, accuracy, predict

METRIC_NAMES = ("healed", "healed_test", "utility", "score", "attack_success", "forget_accuracy",
                "retain_accuracy", "test_accuracy", "healed_official", "attack_success_official")
#: The official code's poison metrics, for like-for-like comparisons with its numbers (research/notes/results.md):
#: healed on as many *random* triggered training images (any class, so ~10 % are genuine target-class
#: images that count as healed when predicted as the target), and attack success on every triggered test
#: image, target class included.
OFFICIAL_POISON_METRICS = ("healed_official", "attack_success_official")


def inference_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    """The drop-mode model with theta_o2 physically cut away, for evaluation.

    Its outputs equal the drop-mode outputs (tested to 1e-5), and a capacity-0.5
    ResNet-9 costs about a quarter of the FLOPs: evaluating a benchmark cell
    this way is 1.9x faster on CPU, with identical metrics (research/speed/eval_speed.py).  Models without
    gates are returned as they are.
    """
    if not gates(model):
        return model
    try:
        plain = discard(model)
    except TypeError:
        return model
    return runtime.prepare(plain).eval()


def known_data_accuracy(model: nn.Module, batcher: Batcher, forget_rows: torch.Tensor, **kw) -> dict[str, float]:
    """Accuracy on D_f and on D_r (every other row of ``batcher``'s data), against the stored labels
    (``kw``: the gate ``mode`` and ``shared_ids`` of :func:`predict`; drop mode by default)."""
    retain_rows = batcher.data.rows_except(forget_rows)
    return {"forget_accuracy": accuracy(model, batcher, forget_rows, **kw),
            "retain_accuracy": accuracy(model, batcher, retain_rows, **kw)}


@dataclass
class Evaluator:
    """Everything needed to score a model on one corrupted task, built once and reused."""

    corrupted: CorruptedData
    test: ImageDataset
    runtime: Runtime

    def __post_init__(self) -> None:
        info = self.corrupted.info
        self.train_batcher = Batcher(self.corrupted.train, self.runtime)
        test = self.test
        if self.corrupted.kind == "poison":
            # Every test image triggered; ASR and healed-test use those whose true class is not the target.
            trig = replace(test, triggered=torch.ones(len(test), dtype=torch.bool),
                           trigger_size=self.corrupted.train.trigger_size)
            self.triggered_batcher = Batcher(trig, self.runtime)
            self.non_target = test.labels != info["target_class"]
            # The official healed: as many random training images as there are poisoned ones, triggered.
            n = len(self.corrupted.corrupted_ids)
            self.random_rows = torch.randperm(len(self.corrupted.train), generator=torch.Generator().manual_seed(0))[:n]
        self.test_batcher = Batcher(test, self.runtime)

    def __call__(self, model: nn.Module, forget_ids: torch.Tensor | None = None) -> dict[str, float | None]:
        c, kind = self.corrupted, self.corrupted.kind
        model = inference_model(model, self.runtime)
        rows_c = c.corrupted_rows
        healed = accuracy(model, self.train_batcher, rows_c, labels=c.true_labels[rows_c])
        test_labels = self.test.labels
        test_pred = predict(model, self.test_batcher, torch.arange(len(self.test)))
        correct = (test_pred == test_labels).float()
        test_acc = 100.0 * float(correct.mean())
        asr = asr_official = healed_official = None
        if kind == "poison":
            target = c.info["target_class"]
            trig_pred = predict(model, self.triggered_batcher, torch.arange(len(self.test)))
            hit = (trig_pred == target).float()
            healed_test = 100.0 * float((trig_pred == test_labels)[self.non_target].float().mean())
            asr = 100.0 * float(hit[self.non_target].mean())
            asr_official = 100.0 * float(hit.mean())
            rows = self.random_rows
            healed_official = accuracy(model, self.train_batcher, rows, labels=c.true_labels[rows],
                                       triggered=torch.ones(len(rows), dtype=torch.bool))
            utility = test_acc
        elif kind == "interclass":
            pair = torch.isin(test_labels, torch.tensor(c.info["class_pair"]))
            healed_test = 100.0 * float(correct[pair].mean())
            utility = 100.0 * float(correct[~pair].mean())
        else:
            healed_test = utility = test_acc
        out: dict[str, float | None] = {
            "healed": healed, "healed_test": healed_test, "utility": utility, "score": utility * healed / 100.0,
            "attack_success": asr, "test_accuracy": test_acc, "forget_accuracy": None, "retain_accuracy": None,
            "healed_official": healed_official, "attack_success_official": asr_official,
        }
        if forget_ids is not None:
            out.update(known_data_accuracy(model, self.train_batcher, c.train.rows_of(forget_ids)))
        return out


def format_table(rows: dict[str, dict[str, float | None]]) -> str:
    """A plain-text table: one row per model, one column per metric."""
    cols = [m for m in METRIC_NAMES if any(r.get(m) is not None for r in rows.values())]
    head = f"{'model':<16}" + "".join(f"{c:>17}" for c in cols)
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        cells = "".join(f"{r[c]:>17.2f}" if r.get(c) is not None else f"{'-':>17}" for c in cols)
        lines.append(f"{name:<16}" + cells)
    return "\n".join(lines)
