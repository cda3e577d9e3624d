"""What a scorer reads from a model: penultimate features, stored-label losses, probabilities.

Features are the input of the last ``nn.Linear``, read by a forward hook: that
works for the package's models and for a user's alike, without knowing their
``forward``.  Every pass runs in eval mode on non-augmented images, batched,
under ``inference_mode``, in drop mode (theta_o2 cut away: the function the
user deploys).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..metrics import inference_model
from ..training import Batcher


class NoLinearLayerError(UserError, ValueError):
    """A model without an ``nn.Linear`` classifier: there is no penultimate layer to read."""


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise NoLinearLayerError(f"{type(model).__name__} has no nn.Linear layer; feature-based scorers read the "
                                 "input of the last one (the classifier)")
    return linears[-1]


@torch.inference_mode()
def over_rows(model: nn.Module, batcher: Batcher, rows: torch.Tensor | None,
              read: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
              batch_size: int = 512) -> torch.Tensor:
    """``read(net, x, stored_labels)`` over ``rows`` (default: every row) in batches, concatenated on the CPU."""
    net = inference_model(model, batcher.runtime)
    was_training = net.training
    net.eval()
    rows = torch.arange(len(batcher.data)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    out: list[torch.Tensor] = []
    try:
        for start in range(0, len(rows), batch_size):
            x, y, _ = batcher.batch(rows[start:start + batch_size], augment=False)
            with batcher.runtime.autocast():
                out.append(read(net, x, y).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(out)


def penultimate(model: nn.Module, batcher: Batcher, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, D) features: the input of the model's last ``nn.Linear``."""
    captured: list[torch.Tensor] = []

    def read(net: nn.Module, x: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        hook = last_linear(net).register_forward_pre_hook(lambda _m, inputs: captured.append(inputs[0].flatten(1)))
        try:
            net(x)
        finally:
            hook.remove()
        return captured.pop()

    return over_rows(model, batcher, rows, read)


def stored_label_loss(model: nn.Module, batcher: Batcher, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(rows,) cross-entropy on the stored label."""
    return over_rows(model, batcher, rows, lambda net, x, y: F.cross_entropy(net(x).float(), y, reduction="none"))


def probabilities(model: nn.Module, batcher: Batcher, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(rows, K) softmax outputs."""
    return over_rows(model, batcher, rows, lambda net, x, _y: net(x).float().softmax(1))
