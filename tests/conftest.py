import contextlib
import gzip
import hashlib
import os
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from rem_unlearn.data.base import ImageDataset

os.environ.setdefault("REM_UNLEARN_QUIET", "1")
# `make test` runs two pytest-xdist workers of one thread each, so that together they use the 2 cores and no more;
# OMP_NUM_THREADS passes the one thread on to the processes a test starts (the CLI, the README example).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, torch.get_num_threads()))

# Fixtures that take half a minute or more to build: the tests that use one run on one worker, which builds it once.
SHARED_FIXTURES = {"poisoned": "planted", "noisy": "planted", "smoke_run": "bench-smoke"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Group the tests of each shared fixture (``--dist loadgroup``; pytest-xdist 3.8 cannot under pytest 9.2, hence
    the pin), then order the work longest first, which ``--no-loadscope-reorder`` keeps: the efficacy task's two
    corruptions, one per worker, then the planted tasks' group; the rest of the suite balances around them."""
    def groups(item) -> set[str]:
        return {SHARED_FIXTURES[name] for name in item.fixturenames if name in SHARED_FIXTURES}

    for item in items:
        for group in groups(item):
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: (item.path.name != "test_efficacy.py", "planted" not in groups(item)))


def make_toy(n: int = 256, classes: int = 4, size: int = 12, channels: int = 1, seed: int = 0,
             id_offset: int = 100) -> ImageDataset:
    """A learnable toy set: each class is a brightness level plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    base = (labels.float() * (200 / max(1, classes - 1)) + 20).view(n, 1, 1, 1)
    noise = torch.randn(n, channels, size, size, generator=g) * 20
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return ImageDataset("toy", images, labels, torch.arange(n) + id_offset, classes,
                        (0.5,) * channels, (0.25,) * channels)


@pytest.fixture
def toy() -> ImageDataset:
    return make_toy()


NETS = textwrap.dedent("""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=3):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    def not_a_model():
        return 42
""")


@pytest.fixture
def user_setup(tmp_path: Path) -> dict[str, Path]:
    """A user's files: nets.py (a 3-class Net), train.npz (60 images, ids 1000..), net.safetensors, forget.txt."""
    from safetensors.torch import save_file

    from rem_unlearn.models.factory import build_user_model

    (tmp_path / "nets.py").write_text(NETS)
    n = 60
    labels = np.arange(n) % 3
    images = (labels[:, None, None] * 80 + np.random.default_rng(0).integers(0, 40, (n, 8, 8))).astype(np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=labels, ids=np.arange(n) + 1000)
    torch.manual_seed(0)  # before the build: the checkpoint must not depend on what ran earlier in the session
    net = build_user_model(f"{tmp_path / 'nets.py'}:Net")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "net.safetensors"))
    (tmp_path / "forget.txt").write_text("1000\n1003\n1006\n")
    return {"root": tmp_path, "nets": tmp_path / "nets.py", "npz": tmp_path / "train.npz",
            "ckpt": tmp_path / "net.safetensors", "forget": tmp_path / "forget.txt"}


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``: a refused command must leave it exactly as it was."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def write_fashion_mnist(root: Path, n_train: int = 120, n_test: int = 40, seed: int = 0,
                        splits: tuple[str, ...] = ("train", "test")) -> Path:
    """Fashion-MNIST-format idx files (gzipped) of random learnable images under ``root``."""
    g = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        if split not in splits:
            continue
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = (labels[:, None, None].astype(np.int64) * 20 + g.integers(0, 60, (n, 28, 28))).astype(np.uint8)
        for name, array in ((f"{prefix}-images-idx3-ubyte.gz", images), (f"{prefix}-labels-idx1-ubyte.gz", labels)):
            raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) + array.tobytes()
            (root / name).write_bytes(gzip.compress(raw))
    return root


def load_script(name: str):
    """A script of scripts/ as a module (the tests call its functions)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(name, root / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- planted tasks (session-wide)
# A ResNet-9 (width 0.25) that memorises 60 corrupted samples of 1,000 Fashion-MNIST images, trained the way the
# benchmark trains (BatchNorm in train mode, bf16 autocast where the runtime has it); about 16 s each, shared by
# the defence, advise and verify tests.

PLANTED_SIZES = {"train": 1000, "test": 600, "corrupted": 60}


def planted_recipe():
    from rem_unlearn.config import OptimConfig, TrainConfig

    return TrainConfig(epochs=20, augment=False, optim=OptimConfig(lr=0.05, batch_size=64))


PLANTED_RECIPE = planted_recipe()


@contextlib.contextmanager
def torch_threads(n: int):
    """``n`` threads for the block, then the thread count of before."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def runtime():
    """The planted tasks' runtime; it leaves the thread count alone (``one_thread`` sets it per module)."""
    from rem_unlearn.config import RuntimeConfig
    from rem_unlearn.training import Runtime

    return Runtime.from_config(RuntimeConfig(progress=False))


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module's tests, as the planted tasks' thresholds were measured; restored after it."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def split():
    from rem_unlearn.data import DatasetNotFoundError

    try:
        return planted_split()
    except DatasetNotFoundError as err:
        pytest.skip(f"the embedded Fashion-MNIST is not available here: {err}")


def planted_split():
    """(train, test): disjoint draws from Fashion-MNIST's training split, of PLANTED_SIZES."""
    from rem_unlearn.data import load_dataset

    full = load_dataset("fashion-mnist", "train")
    n, m = PLANTED_SIZES["train"], PLANTED_SIZES["test"]
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    return full.subset(order[:n]), full.subset(order[n:n + m])


def planted(kind: str, split, runtime):
    """(corrupted data, the trained model in eval mode, its evaluator) for a planted ``kind``."""
    from rem_unlearn import corrupt
    from rem_unlearn.metrics import Evaluator
    from rem_unlearn.models.resnet9 import ResNet9
    from rem_unlearn.training import train_model

    train, test = split
    data = corrupt(train, kind=kind, size=PLANTED_SIZES["corrupted"], seed=0)
    torch.manual_seed(0)
    model = runtime.prepare(ResNet9(num_classes=10, in_channels=1, width=0.25))
    with torch_threads(1):
        train_model(model, data.train, PLANTED_RECIPE, runtime)
    return data, model.eval(), Evaluator(data, test, runtime)


@pytest.fixture(scope="session")
def poisoned(split, runtime):
    return planted("poison", split, runtime)


@pytest.fixture(scope="session")
def noisy(split, runtime):
    return planted("random", split, runtime)
