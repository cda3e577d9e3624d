"""Medium regularity: interclass confusion. N/2 samples of class a become b and N/2 of b become a."""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import ConfigError, CorruptionConfig
from ..data.base import ImageDataset
from .base import CorruptedData, choose, resolve_size

# Confusable pairs: CIFAR-10 cat<->dog and SVHN 3<->5 as in the paper;
# Fashion-MNIST pullover<->coat (two similar long-sleeved garments).
DEFAULT_PAIRS = {"cifar10": (3, 5), "svhn": (3, 5), "fashion-mnist": (2, 4)}


def interclass_swap(train: ImageDataset, cfg: CorruptionConfig) -> CorruptedData:
    a, b = cfg.class_pair or DEFAULT_PAIRS.get(train.name, (3, 5))
    if a == b or not (0 <= a < train.num_classes and 0 <= b < train.num_classes):
        raise ConfigError(f"interclass class_pair must be two different classes in 0..{train.num_classes - 1}, "
                          f"got {(a, b)}")
    count = resolve_size(cfg.size, len(train))
    g = torch.Generator().manual_seed(cfg.seed)
    half = count // 2
    rows_a = choose(torch.nonzero(train.labels == a).flatten(), half, g, f"class {a}")
    rows_b = choose(torch.nonzero(train.labels == b).flatten(), count - half, g, f"class {b}")
    labels = train.labels.clone()
    labels[rows_a], labels[rows_b] = b, a
    ids = torch.sort(train.ids[torch.cat([rows_a, rows_b])]).values
    return CorruptedData(replace(train, labels=labels), train.labels.clone(), ids, "interclass", {"class_pair": [a, b]})
