"""ETD: a model trained with Example-Tied Dropout (Maini et al. 2023), used without further unlearning.

The ETD model's memorisation half is dropped at inference (drop mode), which
already removes much of what only a few examples taught it; the benchmark
reports it as a baseline of its own (docs/paper.md §5, "ETD is a surprisingly strong
baseline").  The method itself does nothing: run it on the ETD-trained model.
"""

from __future__ import annotations

from torch import nn

from ..models.gates import gates, partition_state
from .base import UnlearnContext
from .none import NoUnlearning
from .registry import register_method


@register_method("etd")
class ETD(NoUnlearning):
    summary = "ETD-trained model in drop mode, no further unlearning (Maini et al. 2023)."

    def run(self, ctx: UnlearnContext) -> nn.Module:
        p_mem = partition_state(ctx.model).p_mem if gates(ctx.model) else None
        # An ETD model was trained with p_mem > 0; on a capacity model this is the same as "none".
        ctx.log(event="unchanged", etd_model=bool(p_mem), p_mem=p_mem)
        return ctx.model
