"""High regularity: a backdoor trigger. N samples get a bright bottom-right patch and the target label.

The patch is stamped after augmentation and normalisation (at the final
bottom-right corner, value = the largest normalised pixel value), as in the
paper.  Poisoned samples are drawn from the non-target classes so every one of
them really is mislabelled (the official draw includes ~10 % target-class
images, docs/paper.md §9.8).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..config import ConfigError, CorruptionConfig
from ..data.base import ImageDataset
from .base import CorruptedData, choose, resolve_size


def poison_trigger(train: ImageDataset, cfg: CorruptionConfig) -> CorruptedData:
    t = cfg.target_class
    if not 0 <= t < train.num_classes:
        raise ConfigError(f"poison target_class must be in 0..{train.num_classes - 1}, got {t}")
    if cfg.patch_size > train.image_size:
        raise ConfigError(f"patch_size {cfg.patch_size} is larger than the image ({train.image_size})")
    count = resolve_size(cfg.size, len(train))
    g = torch.Generator().manual_seed(cfg.seed)
    rows = choose(torch.nonzero(train.labels != t).flatten(), count, g, "poisoning (non-target classes)")
    labels, triggered = train.labels.clone(), train.triggered.clone()
    labels[rows], triggered[rows] = t, True
    return CorruptedData(replace(train, labels=labels, triggered=triggered, trigger_size=cfg.patch_size),
                         train.labels.clone(), torch.sort(train.ids[rows]).values, "poison", {"target_class": t})
