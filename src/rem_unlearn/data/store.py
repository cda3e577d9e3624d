"""Training sets larger than memory: uint8 images in a raw file, read a batch at a time.

:class:`DiskImages` stands where an :class:`ImageDataset` holds its images
tensor.  Indexing it with rows reads those rows from the file (``os.pread``,
consecutive rows in one read) and returns a tensor, so the Batcher, the
metrics and every method read batches exactly as from memory (on a GPU, each
batch is copied over asynchronously from pinned memory), and resident
memory is bounded by the batch, not by the set: reads go through the page
cache, which the kernel reclaims, not through a mapping that the process keeps.
A subset (D_r, a cross-validation fold) is a view with a row map, never a copy.

A store is written once, through a unique temporary name moved into place, next
to a JSON header that gives its shape, and is reused while its source is
unchanged (:func:`store_path` keys it by the source's files, sizes and times,
and by how the images were resized).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_path
from .errors import cache_dir

HEADER_SUFFIX = ".json"
READ_BYTES = 64 * 2**20  # one pread at most: Linux returns at most 2 GiB per call, and short reads happen


def _read_exactly(fd: int, size: int, offset: int, path: Path) -> bytes:
    """``size`` bytes at ``offset``, however many reads that takes."""
    parts, done = [], 0
    while done < size:
        part = os.pread(fd, size - done, offset + done)
        if not part:
            raise OSError(f"{path}: ends before byte {offset + size} (the store was truncated)")
        parts.append(part)
        done += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class DiskImages:
    """Images (N, C, H, W) as uint8 in ``path``; ``rows`` maps this view's rows to the file's (None: all)."""

    dtype = torch.uint8

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int], rows: torch.Tensor | None = None,
                 _files: threading.local | None = None):
        self.path, self.file_shape = Path(path), tuple(int(s) for s in shape)
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
        self.row_bytes = int(np.prod(self.file_shape[1:]))
        expected = self.file_shape[0] * self.row_bytes
        if self.path.stat().st_size != expected:
            raise ValueError(f"{self.path}: {self.path.stat().st_size} bytes, expected {expected} for "
                             f"{self.file_shape} (an incomplete or foreign store)")
        self._local = _files or threading.local()  # one descriptor per thread and process, shared by views

    @classmethod
    def open(cls, path: str | Path) -> "DiskImages":
        header = json.loads(Path(str(path) + HEADER_SUFFIX).read_text())
        return cls(path, tuple(header["shape"]))

    # ---------------------------------------------------------------- what a tensor of images offers here

    @property
    def shape(self) -> torch.Size:
        n = self.file_shape[0] if self.rows is None else len(self.rows)
        return torch.Size((n, *self.file_shape[1:]))

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def to(self, device) -> "DiskImages":
        """Stays on disk: a batch goes to the device of the rows that index it, as it is read."""
        return self

    def take(self, rows) -> "DiskImages":
        """A view of ``rows`` (positions in this view), without reading anything."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return DiskImages(self.path, self.file_shape, rows if self.rows is None else self.rows[rows], self._local)

    def __getitem__(self, rows) -> torch.Tensor:
        """The images at ``rows`` (a tensor, list, slice or int), read from the file into a new tensor on the
        device of ``rows``."""
        if isinstance(rows, slice):
            rows = torch.arange(len(self))[rows]
        rows = torch.as_tensor(rows, dtype=torch.long)
        device = rows.device
        single = rows.dim() == 0
        rows = rows.reshape(-1).cpu()
        file_rows = rows if self.rows is None else self.rows[rows]
        out = np.empty((len(file_rows), *self.file_shape[1:]), dtype=np.uint8)
        order = torch.argsort(file_rows)
        wanted = file_rows[order].numpy()
        flat = out.reshape(len(out), -1)
        fd = self._fd()
        start = 0
        per_read = max(1, READ_BYTES // self.row_bytes)
        while start < len(wanted):  # one read per run of consecutive rows (up to READ_BYTES)
            end = start + 1
            while end < len(wanted) and end - start < per_read and wanted[end] == wanted[end - 1] + 1:
                end += 1
            data = _read_exactly(fd, (end - start) * self.row_bytes, int(wanted[start]) * self.row_bytes, self.path)
            flat[order[start:end].numpy()] = np.frombuffer(data, dtype=np.uint8).reshape(end - start, -1)
            start = end
        images = torch.from_numpy(out)
        if device.type == "cuda":  # rows on a GPU (the Batcher's): one asynchronous copy from pinned memory
            images = images.pin_memory().to(device, non_blocking=True)
        return images[0] if single else images

    def _fd(self) -> int:
        fd = getattr(self._local, "fd", None)
        if fd is None or getattr(self._local, "pid", None) != os.getpid():
            fd = self._local.fd = os.open(self.path, os.O_RDONLY)
            self._local.pid = os.getpid()
        return fd

    def __getstate__(self) -> dict:  # sent to worker processes as a path, never as pixels
        return {"path": self.path, "file_shape": self.file_shape, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["file_shape"], state["rows"])

    def chunks(self, size: int = 4096):
        """The whole view in order, ``size`` rows at a time (statistics without loading the set)."""
        for start in range(0, len(self), size):
            yield self[torch.arange(start, min(start + size, len(self)))]


def write_store(path: str | Path, build: Callable[[Callable[[tuple], np.ndarray]], np.ndarray]) -> DiskImages:
    """Create the store at ``path``: ``build(allocate)`` asks ``allocate((N, H, W, C))`` for its output array (a
    memory map of the temporary file) and fills it; the file is then turned channels-first in place and moved
    into place with its header (the header last: a store without one is incomplete)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        hwc = build(lambda shape: np.memmap(tmp, dtype=np.uint8, mode="w+", shape=tuple(shape)))
        n, h, w, c = hwc.shape
        hwc.flush()
        _to_channels_first(hwc, tmp, (n, c, h, w))
        del hwc
    with atomic_path(Path(str(path) + HEADER_SUFFIX)) as tmp:
        tmp.write_text(json.dumps({"shape": [n, c, h, w], "layout": "NCHW", "dtype": "uint8"}))
    return DiskImages(path, (n, c, h, w))


def _to_channels_first(hwc: np.memmap, path: Path, shape: tuple[int, int, int, int], chunk: int = 2048) -> None:
    """Rewrite (N, H, W, C) as (N, C, H, W) in place, a chunk at a time (rows keep their size)."""
    n, c, h, w = shape
    if c == 1:
        return  # the same bytes
    out = np.memmap(path, dtype=np.uint8, mode="r+", shape=(n, c, h, w))
    for start in range(0, n, chunk):
        block = np.ascontiguousarray(hwc[start:start + chunk].transpose(0, 3, 1, 2))
        out[start:start + chunk] = block
    out.flush()


def is_store(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and Path(str(path) + HEADER_SUFFIX).is_file()


STORE_CHOICES = ("auto", "memory", "disk")


def use_disk(store: str, nbytes: int) -> bool:
    """``store`` ("auto": on disk when the images would take more than half the memory now available)."""
    if store not in STORE_CHOICES:
        raise ValueError(f"store must be one of {', '.join(STORE_CHOICES)}, got {store!r}")
    if store != "auto":
        return store == "disk"
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no such sysconf name on this platform
        return False
    return nbytes > available // 2


def cached_store(name: str, source: dict, build: Callable[[Callable[[tuple], np.ndarray]], np.ndarray]) -> DiskImages:
    """The store of ``source`` (a description of the files and the resize that make the images): reused when
    it exists, else written by ``build`` (:func:`write_store`) under a lock, so two runs write it once."""
    from ..checkpoint import cache_key
    from ..files import FileLock

    path = cache_dir("stores") / f"{name}-{cache_key(source)}.u8"
    if not is_store(path):
        with FileLock(path.with_suffix(".lock")):
            if not is_store(path):
                return write_store(path, build)
    return DiskImages.open(path)
