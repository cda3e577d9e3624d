"""EU-k: exact unlearning of the last k layers (Goel et al., "Corrective Machine Unlearning", 2024).

The last ``k`` layers (counted as in CF-k) are re-initialised with the
architecture's own initialisation (weights and BatchNorm statistics of a fresh
model), then trained on D_r with cross-entropy while the rest stays frozen.
Since the earlier layers still saw D_f, this is "exact" only for the head.
Model selection starts from the re-initialised model, so the original is never
returned.
"""

from __future__ import annotations

from .cf_k import CatastrophicForgettingK
from .registry import register_method


@register_method("eu-k")
class ExactUnlearningK(CatastrophicForgettingK):
    summary = "Re-initialise the last k layers and train them on D_r (Goel et al. 2024)."
    reinit = True
