"""Why REM's removal acts on D_f as stored: what a trained model holds of D_f's augmented views.

REM's flush and its step-3.2 term are NPO on D_f in drop mode.  NPO's per-row weight
2 sigma(log pi - log pi_ref) is 1 wherever the model still equals the reference, so it
fades on a row once that row is forgotten, but it is 1 again on every new random view
of the row.  If the trained model only memorised D_f as stored, a view (crop + flip)
is mostly not classified as the corrupted label, and NPO pushes that label down on it
with the full cross-entropy gradient (p close to 0), step after step.

For each model and corruption this prints, on the discovered D_f (drop mode, the trained
model as the reference, as at the first flush step):

* how often D_f, as stored and as augmented views, is classified as its stored label;
* the median reference cross-entropy on both;
* the gradient norm of one removal step (NPO, frozen BatchNorm, REM's removal loss) on
  both, and of one plain training step on a D_tr batch for scale.

    .venv/bin/python research/experiments/removal_views.py [--corruptions interclass,poison] [--rate 0.1] [--seed 2]
"""

from __future__ import annotations

import argparse
import copy

import torch

from any_model import MODELS, task_for  # research/experiments/any_model.py: the same trained models
from rem_unlearn.corruptions import discovered_ids
from rem_unlearn.methods.base import per_sample_ce
from rem_unlearn.methods.rem import REM, REMConfig
from rem_unlearn.training import Batcher, maybe_partition

VIEWS = 5  # augmented draws of D_f, averaged


def grad_norm(model: torch.nn.Module, loss: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)))


def measure(task, rate: float, seed: int) -> dict[str, float]:
    train, rt = task.corrupted.train, task.runtime
    rows = train.rows_of(discovered_ids(task.corrupted.corrupted_ids, rate, seed=seed))
    model = copy.deepcopy(task.model).train()  # drop mode of an expanded model is this model
    reference = copy.deepcopy(task.model).eval().requires_grad_(False)
    rem = REM(REMConfig())
    stored = Batcher(train, rt)
    views = Batcher(train, rt, augment=True, seed=seed)
    out: dict[str, float] = {}
    for name, batcher, draws in (("stored", stored, 1), ("views", views, VIEWS)):
        held, ce, norm = [], [], []
        for _ in range(draws):
            x, y, _ = batcher.batch(rows)
            with torch.no_grad(), rt.autocast():
                logits = reference(x)
            held.append((logits.argmax(1) == y).float().mean().item())
            ce.append(per_sample_ce(logits, y).float().median().item())
            norm.append(grad_norm(model, rem.removal_step_loss(model, reference, x, y, rt)))
        out |= {f"held {name} (%)": 100 * sum(held) / draws, f"median CE_ref {name}": sum(ce) / draws,
                f"removal grad norm {name}": sum(norm) / draws}
    x, y, ids = views.batch(torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:128])
    with rt.autocast(), maybe_partition(model, "own", ids, None):
        out["plain step grad norm"] = grad_norm(model, torch.nn.functional.cross_entropy(model(x), y))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corruptions", default="interclass,poison,random")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--rate", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=2, help="discovery seed (and the views' augmentation seed)")
    a = p.parse_args()
    rows = []
    for corruption in a.corruptions.split(","):
        for name in a.models.split(","):
            task = task_for(corruption, MODELS[name][0])
            rows.append({"corruption": corruption, "model": name} | measure(task, a.rate, a.seed))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")


if __name__ == "__main__":
    main()
