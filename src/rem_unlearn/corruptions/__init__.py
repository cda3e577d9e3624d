"""Corruptions of the training set, one module each, ordered by statistical regularity."""

from __future__ import annotations

from ..config import CorruptionConfig
from ..data.base import ImageDataset
from .base import CorruptedData
from .discovery import discover
from .interclass import DEFAULT_PAIRS, interclass_swap
from .poison import poison_trigger
from .random_swap import random_swap

CORRUPTIONS = {"random": random_swap, "interclass": interclass_swap, "poison": poison_trigger}
REGULARITY = {"random": "low", "interclass": "medium", "poison": "high"}


def corrupt(train: ImageDataset, cfg: CorruptionConfig) -> CorruptedData:
    cfg.validate()
    return CORRUPTIONS[cfg.kind](train, cfg)


__all__ = ["CorruptedData", "CORRUPTIONS", "REGULARITY", "DEFAULT_PAIRS", "corrupt", "discover"]
