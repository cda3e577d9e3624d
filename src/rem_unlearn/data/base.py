"""The in-memory dataset every part of the package works on.

Images stay uint8 on the device and are augmented and normalised in batches
(see :mod:`rem_unlearn.data.augment`), so there is no per-sample Python
pipeline anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .store import DiskImages


@dataclass
class ImageDataset:
    """A labelled image set held as tensors.

    ``ids`` are stable integer sample ids (the index in the original split);
    per-example partition masks and forget sets refer to them, never to row
    positions, so a subset keeps the ids of its parent.
    """

    name: str
    images: torch.Tensor  # uint8, (N, C, H, W); or a DiskImages store read a batch at a time (data/store.py)
    labels: torch.Tensor  # int64, (N,)
    ids: torch.Tensor  # int64, (N,)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    flip: bool = True  # horizontal flips are a valid augmentation (not for digits)
    # Samples whose image carries the poison trigger (stamped after augmentation), and the side of that
    # square patch in pixels: the trigger travels with the data it marks (0: no trigger).
    triggered: torch.Tensor | None = field(default=None, repr=False)  # bool (N,)
    trigger_size: int = 0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"{self.name}: images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if self.labels.shape != (n,) or self.ids.shape != (n,):
            raise ValueError(f"{self.name}: labels and ids must have shape ({n},)")
        self.labels = self.labels.long()
        self.ids = self.ids.long()
        if self.triggered is None:
            self.triggered = torch.zeros(n, dtype=torch.bool)
        if not 0 <= self.trigger_size <= min(self.images.shape[2:]):
            raise ValueError(f"{self.name}: trigger_size must be in 0..{min(self.images.shape[2:])}, "
                             f"got {self.trigger_size}")
        if self.trigger_size == 0 and bool(self.triggered.any()):
            raise ValueError(f"{self.name}: samples are marked triggered but trigger_size is 0 (no patch to stamp)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({self.channels})")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def rows_except(self, rows: torch.Tensor) -> torch.Tensor:
        """Every row position not in ``rows`` (e.g. D_r = D_tr minus the forget rows), in order."""
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[torch.as_tensor(rows, dtype=torch.long)] = False
        return torch.nonzero(keep).flatten()

    def subset(self, rows: torch.Tensor) -> "ImageDataset":
        """Rows by position (not id); ids, labels and trigger flags follow."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return replace(
            self,
            images=self.images.take(rows) if isinstance(self.images, DiskImages) else self.images[rows],  # a view
            labels=self.labels[rows],
            ids=self.ids[rows],
            triggered=self.triggered[rows],
        )

    def rows_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Row positions of the given sample ids; raises if any id is absent."""
        ids = torch.as_tensor(ids, dtype=torch.long)
        order = torch.argsort(self.ids)
        sorted_ids = self.ids[order]
        pos = torch.searchsorted(sorted_ids, ids).clamp(max=len(sorted_ids) - 1)
        found = sorted_ids[pos] == ids
        if not bool(found.all()):
            missing = ids[~found][:5].tolist()
            raise KeyError(f"{self.name}: sample ids not in the dataset: {missing}")
        return order[pos]
