"""Loaders read small fixture files written in the original formats; augmentation is checked on tensors."""

from __future__ import annotations

import gzip
import pickle
import io
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rem_unlearn.data import (
    DATASETS,
    DatasetNotFoundError,
    augment,
    load_dataset,
    max_normalized_value,
    normalize,
    stamp_trigger,
)
from rem_unlearn.data import cifar10, fashion_mnist

rng = np.random.default_rng(0)


# ---------------------------------------------------------------- fixtures


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.fixture
def fmnist_dir(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    data = {}
    for split, prefix, n in (("train", "train", 20), ("test", "t10k", 12)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", x)
        gz = split == "train"  # mix gzipped and plain files
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{'.gz' if gz else ''}", y, gz=gz)
        data[split] = (x, y)
    return tmp_path, data


@pytest.fixture
def no_system_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(fashion_mnist, "CACHE_DIR", tmp_path / "cache")
    return tmp_path


def write_cifar(root: Path, per_batch: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, f)
        xs.append(x)
        ys.append(y)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], np.array(ys[5])


def write_svhn(root: Path, split: str, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0, 0] = 10  # digit 0 is stored as 10
    savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
    return x, y


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_reads_idx_exactly(fmnist_dir, no_system_fmnist, split):
    root, data = fmnist_dir
    ds = load_dataset("fashion-mnist", split, root=str(root), download=False)
    x, y = data[split]
    assert ds.images.shape == (len(y), 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == y.tolist()
    assert torch.equal(ds.ids, torch.arange(len(y)))
    assert ds.num_classes == 10 and ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.mean == (0.2860,) and ds.std == (0.3530,) and ds.flip


def test_fashion_mnist_torchvision_layout(fmnist_dir, no_system_fmnist, tmp_path):
    root, data = fmnist_dir
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in root.glob("*-idx*"):
        f.rename(raw / f.name)
    ds = load_dataset("fashion-mnist", "test", root=str(tmp_path / "tv"), download=False)
    assert ds.labels.tolist() == data["test"][1].tolist()


def test_fashion_mnist_missing_names_debian_package(no_system_fmnist):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist", "train", download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(no_system_fmnist / "system") in msg and "fashion-mnist.s3-website" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_fashion_mnist_failed_download_is_not_found(no_system_fmnist, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "URL", "http://127.0.0.1:9/")  # nothing listens on the discard port
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "test", download=True)
    assert not list((no_system_fmnist / "cache").glob("*"))  # no partial file left behind


def test_fashion_mnist_truncated_and_wrong_files(fmnist_dir, no_system_fmnist):
    root, _ = fmnist_dir
    images = root / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*truncated"):
        load_dataset("fashion-mnist", "train", root=str(root), download=False)
    images.write_bytes(images.read_bytes()[:50])  # cut gzip stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion-mnist", "train", root=str(root), download=False)
    labels = root / "t10k-labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x03" + labels.read_bytes()[4:])  # wrong magic
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*magic"):
        load_dataset("fashion-mnist", "test", root=str(root), download=False)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_test_split():
    ds = load_dataset("fashion-mnist", "test", download=False)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.num_classes == 10
    assert ds.labels.bincount(minlength=10).tolist() == [1000] * 10


def test_test_size_scores_on_a_seeded_subset_of_the_test_split(fmnist_dir):
    from dataclasses import replace

    from rem_unlearn.config import ConfigError, DataConfig, ExperimentConfig
    from rem_unlearn.experiment import load_data, model_key

    root, _ = fmnist_dir
    full = load_data(DataConfig(root=str(root)))[1]
    part = load_data(DataConfig(root=str(root), test_size=5))[1]
    assert len(full) == 12 and len(part) == 5 and torch.isin(part.ids, full.ids).all()
    assert torch.equal(load_data(DataConfig(root=str(root), test_size=5))[1].ids, part.ids)  # seeded
    assert not torch.equal(load_data(DataConfig(root=str(root), test_size=5, subset_seed=1))[1].ids, part.ids)
    assert len(load_data(DataConfig(root=str(root), test_size=50))[1]) == 12  # larger than the split: all of it
    trained_on = ExperimentConfig(data=DataConfig(root=str(root)))
    scored_on_fewer = replace(trained_on, data=DataConfig(root=str(root), test_size=5))
    assert model_key(trained_on, "f") == model_key(scored_on_fewer, "f")  # the model does not see the test split
    for bad, message in (({"test_size": 0}, "must be positive"),
                         ({"test_size": 5, "evaluate_on": "validation", "train_size": 10}, "validation_size")):
        with pytest.raises(ConfigError, match=message):
            DataConfig(**bad).validate()


# ---------------------------------------------------------------- CIFAR-10


def test_cifar10_reads_pickles_exactly(tmp_path):
    xtr, ytr, xte, yte = write_cifar(tmp_path)
    train = load_dataset("cifar10", "train", root=str(tmp_path))
    assert train.images.shape == (15, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.images, torch.from_numpy(xtr.reshape(-1, 3, 32, 32)))
    assert train.labels.tolist() == ytr.tolist() and torch.equal(train.ids, torch.arange(15))
    assert train.class_names == tuple(f"c{i}" for i in range(10)) and train.flip
    test = load_dataset("cifar10", "test", root=str(tmp_path))
    assert torch.equal(test.images.reshape(3, -1), torch.from_numpy(xte)) and test.labels.tolist() == yte.tolist()
    assert test.mean == (0.4914, 0.4822, 0.4465) and test.std == (0.2470, 0.2435, 0.2616)


def test_cifar10_missing_and_bad_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="data_batch_1.*download=True"):
        load_dataset("cifar10", "train", root=str(tmp_path))
    write_cifar(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:200])
    with pytest.raises(ValueError, match="data_batch_3"):
        load_dataset("cifar10", "train", root=str(tmp_path))
    test = tmp_path / "cifar-10-batches-py" / "test_batch"
    with open(test, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="test_batch.*3072"):
        load_dataset("cifar10", "test", root=str(tmp_path))


def test_cifar10_download_extracts_safely(tmp_path, monkeypatch):
    write_cifar(tmp_path / "src")
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        info = tarfile.TarInfo("outside.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))

    def fake_fetch(url: str, dest: Path, hint: str = "") -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(tar_bytes.getvalue())
        return dest

    monkeypatch.setattr(cifar10, "fetch_url", fake_fetch)
    ds = load_dataset("cifar10", "test", root=str(tmp_path / "dl"), download=True)
    assert len(ds) == 3 and not (tmp_path / "dl" / "outside.txt").exists()
    assert not (tmp_path / "dl" / "cifar-10-python.tar.gz").exists()


# ---------------------------------------------------------------- SVHN


def test_svhn_reads_mat_and_maps_ten_to_zero(tmp_path):
    x, y = write_svhn(tmp_path, "test")
    ds = load_dataset("svhn", "test", root=str(tmp_path))
    assert ds.images.shape == (7, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(x.transpose(3, 2, 0, 1)))
    expected = y[:, 0].astype(np.int64) % 10
    assert ds.labels.tolist() == expected.tolist() and ds.labels[0] == 0
    assert torch.equal(ds.ids, torch.arange(7)) and not ds.flip and ds.class_names[0] == "0"
    assert ds.mean == (0.4914, 0.4822, 0.4465)


def test_svhn_missing_and_truncated(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="train_32x32.mat.*download=True"):
        load_dataset("svhn", "train", root=str(tmp_path))
    write_svhn(tmp_path, "train")
    f = tmp_path / "train_32x32.mat"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ValueError, match="train_32x32.mat"):
        load_dataset("svhn", "train", root=str(tmp_path))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_dataset("mnist")
    assert all(name in str(err.value) for name in DATASETS)


# ---------------------------------------------------------------- augmentation


def batch(b: int = 16, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)


def crops(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """All zero-padded crops of one (C, H, W) image: a loop-based reference."""
    _, h, w = image.shape
    p = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    return [p[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]


def test_augment_shape_dtype_and_determinism():
    x = batch()
    out = augment(x, torch.Generator().manual_seed(3), pad=2, flip=True)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(3), pad=2, flip=True))
    assert not torch.equal(out, augment(x, torch.Generator().manual_seed(4), pad=2, flip=True))


def test_augment_without_flip_is_a_plain_crop():
    x = batch(b=32)
    out = augment(x, torch.Generator().manual_seed(0), pad=2, flip=False)
    for img, res in zip(x, out):
        assert any(torch.equal(res, c) for c in crops(img, 2))
        assert not any(torch.equal(res, c.flip(-1)) for c in crops(img, 2))  # random images are never symmetric


def test_augment_with_flip_flips_some():
    x = batch(b=32)
    out = augment(x, torch.Generator().manual_seed(0), pad=2, flip=True)
    flipped = [any(torch.equal(res, c.flip(-1)) for c in crops(img, 2)) for img, res in zip(x, out)]
    plain = [any(torch.equal(res, c) for c in crops(img, 2)) for img, res in zip(x, out)]
    assert all(f != p for f, p in zip(flipped, plain)) and 0 < sum(flipped) < len(x)


def test_augment_pad_zero_is_identity():
    x = batch()
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), pad=0, flip=False), x)


def test_normalize_and_trigger():
    mean, std = (0.5, 0.25), (0.5, 0.25)
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 2, 1, 1).expand(3, 2, 4, 4)
    z = normalize(x, mean, std)
    assert z.dtype == torch.float32 and torch.allclose(z[:, 0], torch.tensor(-1.0)) and torch.allclose(z[:, 1], torch.tensor(3.0))
    assert max_normalized_value(mean, std) == pytest.approx(3.0)
    mask = torch.tensor([True, False, True])
    stamped = stamp_trigger(z, mask, patch_size=2, value=9.0)
    expected = z.clone()
    expected[0, :, 2:, 2:] = 9.0
    expected[2, :, 2:, 2:] = 9.0
    assert torch.equal(stamped, expected) and not torch.equal(z, stamped)  # input untouched
