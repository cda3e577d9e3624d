"""Corruptions of the training set, one module each, ordered by statistical regularity."""

from __future__ import annotations

from ..config import CorruptionConfig, from_dict
from ..data.base import ImageDataset
from .base import CorruptedData
from .discovery import discovered_ids
from .interclass import DEFAULT_PAIRS, interclass_swap
from .poison import poison_trigger
from .random_swap import random_swap

CORRUPTIONS = {"random": random_swap, "interclass": interclass_swap, "poison": poison_trigger}
REGULARITY = {"random": "low", "interclass": "medium", "poison": "high"}


def corrupt(train: ImageDataset, cfg: CorruptionConfig | None = None, **fields) -> CorruptedData:
    """``train`` with a corruption planted: ``cfg``, or its fields as keywords (``kind="poison", size=80``)."""
    if cfg is None:
        cfg = from_dict(CorruptionConfig, fields, where="corruption")
    elif fields:
        raise TypeError("give a CorruptionConfig or its fields as keywords, not both")
    cfg.validate()
    return CORRUPTIONS[cfg.kind](train, cfg)


__all__ = ["CorruptedData", "CORRUPTIONS", "REGULARITY", "DEFAULT_PAIRS", "corrupt", "discovered_ids"]
