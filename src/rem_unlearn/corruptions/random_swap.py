"""Low regularity: random label swap. Each chosen sample gets a uniformly random *different* class.

The official code lets about 10 % of samples keep their true label (docs/paper.md §9.8);
here the offset is drawn from 1..K-1 so every corrupted label is wrong.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import CorruptionConfig
from ..data.base import ImageDataset
from .base import CorruptedData, choose, resolve_size


def random_swap(train: ImageDataset, cfg: CorruptionConfig) -> CorruptedData:
    g = torch.Generator().manual_seed(cfg.seed)
    count = resolve_size(cfg.size, len(train))
    rows = choose(torch.arange(len(train)), count, g, "random label swap")
    offset = torch.randint(1, train.num_classes, (count,), generator=g)
    labels = train.labels.clone()
    labels[rows] = (labels[rows] + offset) % train.num_classes
    return CorruptedData(replace(train, labels=labels), train.labels.clone(), torch.sort(train.ids[rows]).values,
                         "random", {})
