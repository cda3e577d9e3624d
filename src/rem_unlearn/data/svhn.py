"""SVHN (cropped digits) from the official MATLAB files (torchvision layout), no torchvision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset
from .cifar10 import MEAN, STD  # the paper normalises SVHN with CIFAR-10 statistics
from .errors import DatasetFileError, DatasetNotFoundError, cache_dir, download as fetch_url

URL = "http://ufldl.stanford.edu/housenumbers/{split}_32x32.mat"
SPLITS = ("train", "test", "extra")
CLASS_NAMES = tuple(str(d) for d in range(10))


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io  # imported lazily: only SVHN needs scipy

    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    except Exception as exc:  # scipy raises many types (MatReadError, ValueError, KeyError, ...)
        raise DatasetFileError(f"{path}: not a readable SVHN .mat file (truncated or wrong file: {exc!r})") from exc
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
        raise DatasetFileError(f"{path}: X {x.dtype}{x.shape} / y {y.shape}, expected uint8 (32, 32, 3, N) and (N, 1)")
    y = y.reshape(-1).astype(np.int64)
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DatasetFileError(f"{path}: labels outside 1..10")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


def load_svhn(split: str = "train", root: str | None = None, download: bool = False) -> ImageDataset:
    """Load an SVHN split from ``root/{split}_32x32.mat`` (default root: user cache)."""
    if split not in SPLITS:
        raise ValueError(f"svhn: unknown split {split!r}; valid: {list(SPLITS)}")
    path = (Path(root) if root else cache_dir("svhn")) / f"{split}_32x32.mat"
    url = URL.format(split=split)
    if not path.is_file():
        if not download:
            raise DatasetNotFoundError(f"SVHN {split} file missing: {path}; pass download=True to fetch {url}")
        fetch_url(url, path)
    images, labels = _read_mat(path)
    return ImageDataset(
        name="svhn",
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        ids=torch.arange(len(labels), dtype=torch.int64),
        num_classes=10,
        mean=MEAN,
        std=STD,
        class_names=CLASS_NAMES,
        flip=False,
    )
