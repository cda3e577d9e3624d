"""Datasets as in-memory tensors, plus batched augmentation."""

from __future__ import annotations

from collections.abc import Callable

from .augment import augment, max_normalized_value, normalize, stamp_trigger
from .base import ImageDataset
from .cifar10 import load_cifar10
from .errors import DatasetNotFoundError
from .fashion_mnist import load_fashion_mnist
from .svhn import load_svhn

DATASETS: dict[str, Callable[..., ImageDataset]] = {
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "svhn": load_svhn,
}


def load_dataset(name: str, split: str = "train", root: str | None = None, download: bool | None = None) -> ImageDataset:
    """Load ``split`` of a registered dataset; ``download=None`` keeps the loader's own default."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    kwargs = {} if download is None else {"download": download}
    return DATASETS[name](split=split, root=root, **kwargs)


__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "ImageDataset",
    "augment",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_svhn",
    "max_normalized_value",
    "normalize",
    "stamp_trigger",
]
