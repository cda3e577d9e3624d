"""CIFAR-10 from the official python pickles (torchvision folder layout), no torchvision."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset
from .errors import DatasetFileError, DatasetNotFoundError, cache_dir, download as fetch_url

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DatasetFileError(f"{path}: not a readable CIFAR pickle (truncated or wrong file: {exc!r})") from exc
    if not isinstance(obj, dict):
        raise DatasetFileError(f"{path}: expected a dict pickle, got {type(obj).__name__}")
    return obj


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    data, labels = d.get(b"data"), d.get(b"labels")
    if data is None or labels is None:
        raise DatasetFileError(f"{path}: missing b'data' or b'labels' (not a CIFAR-10 batch)")
    data, labels = np.asarray(data), np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DatasetFileError(f"{path}: data {data.dtype}{data.shape} / labels {labels.shape}, "
                               "expected uint8 (N, 3072) and (N,)")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DatasetFileError(f"{path}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


def _fetch(root: Path) -> None:
    """Download and extract the official tarball, refusing members that escape ``root``."""
    tar_path = fetch_url(URL, root / "cifar-10-python.tar.gz", "Pass the folder holding cifar-10-batches-py as root.")
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name.split("/")[0] == FOLDER]
            for m in members:
                if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                    raise DatasetFileError(f"{tar_path}: unsafe member {m.name!r}")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetFileError(f"{tar_path}: corrupt or truncated archive ({exc})") from exc
    tar_path.unlink()


def load_cifar10(split: str = "train", root: str | None = None, download: bool = False) -> ImageDataset:
    """Load a CIFAR-10 split from ``root/cifar-10-batches-py`` (default root: user cache)."""
    if split not in FILES:
        raise ValueError(f"cifar10: unknown split {split!r}; valid: {sorted(FILES)}")
    base = Path(root) if root else cache_dir("cifar10")
    folder = base if (base / FILES[split][0]).is_file() else base / FOLDER  # accept the inner folder too
    paths = [folder / name for name in FILES[split]]
    if not all(p.is_file() for p in paths):
        if not download:
            missing = [str(p) for p in paths if not p.is_file()]
            raise DatasetNotFoundError(f"CIFAR-10 {split} files missing: {', '.join(missing)}; pass download=True to fetch {URL}")
        _fetch(base)
        folder = base / FOLDER
        paths = [folder / name for name in FILES[split]]
    batches = [_read_batch(p) for p in paths]
    names = CLASS_NAMES
    if (folder / "batches.meta").is_file():
        meta = _unpickle(folder / "batches.meta").get(b"label_names")
        if meta is not None and len(meta) == 10:
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta)
    labels = np.concatenate([b[1] for b in batches])
    return ImageDataset(
        name="cifar10",
        images=torch.from_numpy(np.concatenate([b[0] for b in batches])),
        labels=torch.from_numpy(labels),
        ids=torch.arange(len(labels), dtype=torch.int64),
        num_classes=10,
        mean=MEAN,
        std=STD,
        class_names=names,
        flip=True,
    )
