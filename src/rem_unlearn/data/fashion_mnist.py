"""Fashion-MNIST from its original idx files (gzipped or not), no torchvision."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset
from .errors import DatasetFileError, DatasetNotFoundError, cache_dir, download as fetch_url

URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
CACHE_DIR = cache_dir("fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# Computed once over the 60000 training images in [0, 1] pixel scale
# (0.28604, 0.35302); hard-coded so that test-only loads normalise identically.
MEAN = (0.2860,)
STD = (0.3530,)


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte idx file, checking magic number and size so bad files fail loudly."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the suffix says
            raw = gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetFileError(f"{path}: unreadable, or a corrupt or truncated gzip file ({exc})") from exc
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DatasetFileError(f"{path}: not an unsigned-byte idx file with {ndim} dimension(s) (bad magic number)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetFileError(f"{path}: size {len(raw)} bytes, expected {expected} for shape {dims} "
                               "(truncated or wrong file)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find(folders: list[Path], split: str) -> list[Path] | None:
    for folder in folders:
        paths = [_locate(folder, stem) for stem in FILES[split]]
        if all(p is not None for p in paths):
            return paths  # type: ignore[return-value]
    return None


def load_fashion_mnist(split: str = "train", root: str | None = None, download: bool | None = None) -> ImageDataset:
    """Load a Fashion-MNIST split.

    With ``root``, only ``root`` and ``root/FashionMNIST/raw`` are searched: a
    root that does not hold the split is an error, never a silent switch to
    another copy (``download=True`` fetches the files into ``root``).  Without
    it: the Debian folder, then the user cache, then a download (unless
    ``download=False``).
    """
    if split not in FILES:
        raise ValueError(f"fashion-mnist: unknown split {split!r}; valid: {sorted(FILES)}")
    wanted = " and ".join(f"{stem}[.gz]" for stem in FILES[split])
    if root:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise DatasetNotFoundError(f"data.root {root}: no such folder")
        folders = [base, base / "FashionMNIST" / "raw"]
        paths = _find(folders, split)
        if paths is None:
            if not download:
                raise DatasetNotFoundError(f"Fashion-MNIST {split} files ({wanted}) not found in data.root "
                                           f"{' or '.join(map(str, folders))}; put them there, remove data.root "
                                           "to use the installed copy, or set data.download=true to fetch them")
            paths = [fetch_url(URL + stem + ".gz", base / (stem + ".gz")) for stem in FILES[split]]
    else:
        folders = [SYSTEM_DIR, CACHE_DIR]
        paths = _find(folders, split)
        if paths is None:
            hint = (
                f"Fashion-MNIST {split} files not found in {', '.join(map(str, folders))}. "
                f"Install them with `apt-get install dataset-fashion-mnist` (into {SYSTEM_DIR}), "
                f"or download {URL} files into {CACHE_DIR}"
            )
            if download is False:
                raise DatasetNotFoundError(hint + " (or pass download=True)")
            paths = [fetch_url(URL + stem + ".gz", CACHE_DIR / (stem + ".gz"), hint) for stem in FILES[split]]
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DatasetFileError(f"{paths[0]}: {images.shape} images do not match {labels.shape[0]} labels in {paths[1]}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DatasetFileError(f"{paths[1]}: label {labels.max()} out of range 0..9")
    return ImageDataset(
        name="fashion-mnist",
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        ids=torch.arange(len(labels), dtype=torch.int64),
        num_classes=len(CLASS_NAMES),
        mean=MEAN,
        std=STD,
        class_names=CLASS_NAMES,
        flip=True,
    )
