"""What every corruption returns: the corrupted training set and the exact corrupted ids."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ConfigError
from ..data.base import ImageDataset


@dataclass
class CorruptedData:
    """The training set as the model saw it, plus the ground truth the unlearner never sees."""

    train: ImageDataset  # labels as stored (corrupted), trigger flags set
    true_labels: torch.Tensor  # aligned with train rows
    corrupted_ids: torch.Tensor  # sorted sample ids
    kind: str
    info: dict = field(default_factory=dict)  # class_pair, target_class, ...

    @property
    def corrupted_rows(self) -> torch.Tensor:
        return self.train.rows_of(self.corrupted_ids)


def resolve_size(size: float, n: int) -> int:
    """A count (>= 1) or a fraction (< 1) of ``n``."""
    count = int(round(size * n)) if size < 1 else int(size)
    if count <= 0:
        raise ConfigError(f"corruption size {size} gives no corrupted samples on a set of {n}")
    if count > n:
        raise ConfigError(f"corruption size {count} is larger than the training set ({n} samples)")
    return count


def choose(pool: torch.Tensor, count: int, generator: torch.Generator, what: str) -> torch.Tensor:
    if count > len(pool):
        raise ConfigError(f"cannot pick {count} samples for {what}: only {len(pool)} available")
    return pool[torch.randperm(len(pool), generator=generator)[:count]]
