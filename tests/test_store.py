"""Training sets larger than memory: the disk store reads what memory holds, trains the same, and stays bounded."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_toy
from rem_unlearn.api import unlearn_user_model
from rem_unlearn.config import RuntimeConfig
from rem_unlearn.data.images import ImageFit
from rem_unlearn.data import store
from rem_unlearn.data.store import DiskImages, write_store
from rem_unlearn.data.user import load_image_folder
from rem_unlearn.models import SmallCNN
from rem_unlearn.training import Runtime


@pytest.fixture(autouse=True)
def _stores_in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def store_of(images: torch.Tensor, path: Path) -> DiskImages:
    """``images`` (N, C, H, W) written as a store."""
    def build(allocate):
        out = allocate((images.shape[0], *images.shape[2:], images.shape[1]))
        out[:] = images.permute(0, 2, 3, 1).numpy()
        return out

    return write_store(path, build)


def test_rows_read_from_disk_equal_the_rows_in_memory(tmp_path: Path, monkeypatch) -> None:
    images = torch.randint(0, 256, (50, 3, 7, 7), dtype=torch.uint8)
    disk = store_of(images, tmp_path / "s.u8")
    assert disk.shape == images.shape and disk.dim() == 4 and disk.dtype == torch.uint8
    rows = torch.tensor([49, 3, 4, 5, 3, 0, 17, 18])  # any order, repeats, runs of consecutive rows
    assert torch.equal(disk[rows], images[rows]) and torch.equal(disk[7], images[7])
    assert torch.equal(disk[10:20:3], images[10:20:3])
    view = disk.take(torch.tensor([9, 8, 40, 41])).take(torch.tensor([3, 0]))  # views compose, nothing read
    assert torch.equal(view[torch.arange(2)], images[torch.tensor([41, 9])])
    again = pickle.loads(pickle.dumps(view))  # a worker process gets the path, not the pixels
    assert len(pickle.dumps(view)) < 2000 and torch.equal(again[torch.arange(2)], images[torch.tensor([41, 9])])
    assert torch.equal(torch.cat(list(disk.chunks(size=16))), images)
    monkeypatch.setattr(store, "READ_BYTES", 3 * 147)  # runs longer than one read: split into several
    assert torch.equal(disk[torch.arange(50)], images) and torch.equal(disk[rows], images[rows])
    assert torch.equal(DiskImages.open(tmp_path / "s.u8")[rows], images[rows])
    with open(tmp_path / "s.u8", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="an incomplete or foreign store"):
        DiskImages.open(tmp_path / "s.u8")


def photo_folder(root: Path, n: int = 24) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        size = (9, 12) if i % 2 else (12, 12)
        Image.fromarray(rng.integers(0, 256, (*size, 3)).astype(np.uint8)).save(root / f"c{i % 3}" / f"{i}.png")
    return root


def test_a_folder_on_disk_is_the_folder_in_memory_and_is_written_once(tmp_path: Path) -> None:
    root = photo_folder(tmp_path / "photos")
    fit = ImageFit.square(8)
    memory = load_image_folder(root, fit=fit, store="memory")
    disk = load_image_folder(root, fit=fit, store="disk")
    assert isinstance(disk.images, DiskImages) and isinstance(memory.images, torch.Tensor)
    assert torch.equal(disk.images[torch.arange(len(disk))], memory.images)
    assert disk.mean == pytest.approx(memory.mean) and disk.std == pytest.approx(memory.std)
    stores = list((tmp_path / "cache/rem_unlearn/stores").glob("*.u8"))
    assert len(stores) == 1
    written = stores[0].stat().st_mtime_ns
    load_image_folder(root, fit=fit, store="disk")
    assert stores[0].stat().st_mtime_ns == written  # reused
    load_image_folder(root, fit=ImageFit.square(6), store="disk")
    assert len(list((tmp_path / "cache/rem_unlearn/stores").glob("*.u8"))) == 2  # another resize: another store
    subset = disk.subset(torch.tensor([5, 2]))
    assert isinstance(subset.images, DiskImages)  # a view, not a copy
    assert torch.equal(subset.images[torch.arange(2)], memory.images[torch.tensor([5, 2])])


@pytest.mark.parametrize("method", ["rem", "finetune"])
def test_unlearning_from_disk_trains_exactly_as_from_memory(tmp_path: Path, method: str) -> None:
    """Train mode, BatchNorm, augmentation and per-batch masks: the same weights bit for bit (CPU)."""
    toy = replace(make_toy(n=96, classes=3, size=12, channels=3), flip=True)
    disk = replace(toy, images=store_of(toy.images, tmp_path / "toy.u8"))
    forget = toy.ids[:6]
    runtime = Runtime.from_config(RuntimeConfig(device="cpu"))
    settings = {"epochs": 1, "optim": {"batch_size": 16}} if method == "finetune" else {
        "epochs": 1, "optim": {"batch_size": 16}, "max_flush_epochs": 1, "select_best": False}
    results = []
    for data in (toy, disk):
        torch.manual_seed(0)
        model = SmallCNN(3, 3, width=0.25)
        results.append(unlearn_user_model(model, data, forget, method, runtime=runtime, max_utility_drop=None,
                                          **settings))
    a, b = (r.model.state_dict() for r in results)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


MEASURE = """
import os, sys, torch
from rem_unlearn.data.store import DiskImages
from rem_unlearn.training import Batcher, Runtime
from rem_unlearn.config import RuntimeConfig
from conftest import make_toy
from dataclasses import replace
images = DiskImages.open(sys.argv[1])
if sys.argv[2] == "memory":
    images = images[torch.arange(len(images))]
toy = make_toy(n=8, classes=2, size=64, channels=3)
data = replace(toy, images=images, labels=torch.zeros(len(images), dtype=torch.long),
               ids=torch.arange(len(images)), triggered=torch.zeros(len(images), dtype=torch.bool))
batcher = Batcher(data, Runtime.from_config(RuntimeConfig(device="cpu")), augment=True)
rows = torch.arange(len(images)) if sys.argv[2] != "quarter" else torch.arange(len(images) // 4)
import ctypes
trim = ctypes.CDLL(None).malloc_trim  # glibc: hand freed heap back, so that what is resident is what is held
def rss():  # resident now, in MB (the import of torch sets a high-water mark of its own)
    trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 2**20
peak = rss()
for x, _, _ in batcher.epoch(rows, 256):
    peak = max(peak, rss())
print(peak)
"""


def _glibc() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "malloc_trim")


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or not _glibc(),
                    reason="reads resident memory from /proc, with glibc's malloc_trim")
def test_a_pass_over_a_store_is_bounded_by_the_batch(tmp_path: Path) -> None:
    """Every row once through the Batcher: from disk the peak memory stays near a batch; from memory it is the set."""
    n = 12_000  # 147 MB as uint8 at 3x64x64

    def build(allocate):
        out = allocate((n, 64, 64, 3))
        for start in range(0, n, 1000):
            out[start:start + 1000] = np.random.default_rng(start).integers(0, 256, (min(1000, n - start), 64, 64, 3),
                                                                            dtype=np.uint8)
        return out

    write_store(tmp_path / "big.u8", build)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    peak = {}
    for kind in ("quarter", "disk", "memory"):  # quarter: a quarter of the pass, from disk
        done = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "big.u8"), kind], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        peak[kind] = int(done.stdout.strip())  # MB of peak resident memory
    assert peak["disk"] - peak["quarter"] < 20, peak  # three quarters of the set (110 MB) more: no more memory
    assert peak["memory"] - peak["disk"] > 120, peak  # in memory, the set itself (147 MB)
