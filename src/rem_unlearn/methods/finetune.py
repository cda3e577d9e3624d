"""Fine-tune ("CF" in the benchmark): cross-entropy on D_r for the step budget.

Catastrophic forgetting of D_f by continued training on the retain set (Goel
et al. 2024 use it as the k = all case of CF-k).  Best epoch by the known-data
proxy (the official code returns the epoch-6 checkpoint of 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import OptimConfig
from .base import LR_RANGE, Times, UnlearnConfig
from .common import naive_optim
from .registry import register_method
from .template import EpochMethod


@dataclass
class FinetuneConfig(UnlearnConfig):
    optim: OptimConfig = field(default_factory=naive_optim)
    search_space: ClassVar[dict[str, tuple]] = {"optim.lr": (*LR_RANGE, Times(4.0))}


@register_method("finetune")
class Finetune(EpochMethod[FinetuneConfig]):
    Config = FinetuneConfig
    summary = "Fine-tune on D_r with cross-entropy (catastrophic forgetting)."

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x).float(), y)
