"""From a config to a trained, corrupted model: data, corruption, model, training and its cache."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import (CheckpointError, cache_key, is_complete, load_weights, read_meta, save_checkpoint,
                         sidecar_path)
from .config import ConfigError, DataConfig, ExperimentConfig, RuntimeConfig, _merge, from_dict, to_dict
from .corruptions import CorruptedData, corrupt
from .data import ImageDataset, load_dataset
from .files import FileLock, atomic_path, check_writable_folder, remove_temp_files
from .metrics import Evaluator
from .models import build_model, rebuild_model
from .training import Runtime, resolve_precision, train_model

log = logging.getLogger(__name__)


def load_data(cfg: DataConfig) -> tuple[ImageDataset, ImageDataset]:
    """Training split (optionally a seeded subset; ids stay those of the full split) and the evaluation split:
    the test split (optionally a seeded subset), or with ``evaluate_on="validation"`` other images of the
    training split (the test split is then not read). Data a driver sent (:func:`provide_data`) is returned as
    it was sent."""
    provided = _PROVIDED.get(data_id(cfg))
    if provided is not None:
        return provided
    def seeded_order(split: ImageDataset) -> torch.Tensor:
        return torch.randperm(len(split), generator=torch.Generator().manual_seed(cfg.subset_seed))

    full = load_dataset(cfg.name, "train", root=cfg.root, download=cfg.download)
    train = full
    order = seeded_order(full)
    if cfg.train_size is not None and cfg.train_size < len(full):
        train = full.subset(torch.sort(order[:cfg.train_size]).values)
    if cfg.evaluate_on == "validation":
        rest = order[cfg.train_size:]
        if len(rest) < cfg.validation_size:
            raise ConfigError(f"data.validation_size={cfg.validation_size}: only {len(rest)} training images are "
                              f"outside the training subset of {cfg.train_size}")
        return train, full.subset(torch.sort(rest[:cfg.validation_size]).values)
    test = load_dataset(cfg.name, "test", root=cfg.root, download=cfg.download)
    if cfg.test_size is not None and cfg.test_size < len(test):
        test = test.subset(torch.sort(seeded_order(test)[:cfg.test_size]).values)
    return train, test


def split_fingerprint(images: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> str:
    """A content hash of a training split as read (about 10 ms for 10k Fashion-MNIST images)."""
    h = hashlib.sha256()
    for t in (images, labels, ids):
        a = t.detach().cpu().contiguous().numpy()
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(memoryview(a.reshape(-1)))
    return h.hexdigest()[:20]


_FINGERPRINTS: dict[str, str] = {}  # per process: the data config -> the fingerprint of its training split
_PROVIDED: dict[str, tuple[ImageDataset, ImageDataset]] = {}  # per process: splits a driver sent, by data config


def provide_data(cfg: DataConfig, splits: tuple[ImageDataset, ImageDataset]) -> None:
    """Make :func:`load_data` return ``splits`` for ``cfg`` in this process: the data of a driver whose workers
    cannot read its files (a cluster without a shared disk)."""
    _PROVIDED[data_id(cfg)] = splits


def data_id(cfg: DataConfig) -> str:
    data = to_dict(cfg)
    data["root"] = os.path.realpath(os.path.expanduser(cfg.root)) if cfg.root else None
    return cache_key(data)


def data_fingerprint(cfg: DataConfig) -> str:
    """The fingerprint of the training split ``cfg`` reads (loaded once per process and data config)."""
    key = data_id(cfg)
    if key not in _FINGERPRINTS:
        train, _ = load_data(cfg)
        _FINGERPRINTS[key] = split_fingerprint(train.images, train.labels, train.ids)
    return _FINGERPRINTS[key]


def model_key(cfg: ExperimentConfig, fingerprint: str) -> str:
    """Every input that changes the trained model: the configs, and the training images and labels as read
    (``fingerprint``), so data from another root or a changed file never reuses a model."""
    unseen = ("root", "download", "evaluate_on", "validation_size", "test_size")  # not what the model learns from
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in unseen}
    return cache_key({"data": data, "train_data": fingerprint, "corruption": to_dict(cfg.corruption),
                      "model": to_dict(cfg.model), "train": to_dict(cfg.train), "precision": precision_key(cfg.runtime)})


def precision_key(runtime: RuntimeConfig) -> str:
    """How keys name the autocast: ``runtime.precision`` as keys did before ``auto`` depended on the CPU (so those
    stay valid), but ``auto`` where it is not bf16 (a CPU without native bf16) as what runs: fp32."""
    if runtime.precision == "auto" and (resolved := resolve_precision(runtime)) != "bf16":
        return resolved
    return runtime.precision


def models_dir(cache_dir: str | Path) -> Path:
    """The folder of trained models under a ``runtime.cache_dir``."""
    return Path(cache_dir).expanduser() / "models"


def model_path(cfg: ExperimentConfig, fingerprint: str | None = None) -> Path:
    """Where the trained model of ``cfg`` is cached (``fingerprint`` defaults to the data's)."""
    key = model_key(cfg, fingerprint or data_fingerprint(cfg.data))
    return models_dir(cfg.runtime.cache_dir) / key / "model.safetensors"


def is_cached(cfg: ExperimentConfig) -> bool:
    return is_complete(model_path(cfg))


def model_files(cfg: ExperimentConfig) -> dict[str, bytes]:
    """The cached model of ``cfg`` as file name -> bytes (weights and sidecar), to send to another machine."""
    path = model_path(cfg)
    return {p.name: p.read_bytes() for p in (path, sidecar_path(path))}


def install_model(cfg: ExperimentConfig, files: dict[str, bytes]) -> bool:
    """Write a model received from another machine (:func:`model_files`) into this machine's cache, under the
    model's lock, unless it is there already; True when it was written."""
    path = model_path(cfg)
    if is_complete(path):
        return False
    check_writable_folder(path.parent, f"runtime.cache_dir {cfg.runtime.cache_dir}")
    with FileLock(path.with_name(".lock")):
        if is_complete(path):
            return False
        remove_temp_files(path.parent)
        for name in (path.name, sidecar_path(path).name):  # the sidecar last: it marks the model complete
            with atomic_path(path.parent / name) as tmp:
                tmp.write_bytes(files[name])
    return True


def method_overrides(cfg: ExperimentConfig, overrides: dict) -> dict:
    """A method's config overrides with the recipe's unlearning optimiser (``cfg.unlearn_optim``) underneath:
    what the API, the CLI and the benchmark all run a method with, on this experiment."""
    if cfg.unlearn_optim is None:
        return dict(overrides)
    return _merge({"optim": to_dict(cfg.unlearn_optim)}, overrides)


@dataclass
class Task:
    """One corrupted-data unlearning task: the data, the ground truth and the trained model."""

    cfg: ExperimentConfig
    corrupted: CorruptedData
    test: ImageDataset
    model: nn.Module
    runtime: Runtime
    checkpoint: Path | None = None
    train_seconds: float = 0.0
    history: list = field(default_factory=list)

    @cached_property
    def evaluate(self) -> Evaluator:
        return Evaluator(self.corrupted, self.test, self.runtime)


def corrupted_data(cfg: ExperimentConfig) -> tuple[CorruptedData, ImageDataset]:
    train, test = load_data(cfg.data)
    return corrupt(train, cfg.corruption), test


def prepare(cfg: ExperimentConfig, *, train: bool = True, data: tuple[CorruptedData, ImageDataset] | None = None,
            on_train: Callable[[Path], None] | None = None) -> Task:
    """Load or train the corrupted model for ``cfg``; the cache key covers every input that changes it.

    A process that has to train holds ``<model folder>/.lock`` (``fcntl.flock``)
    meanwhile: another process needing the same model waits, then loads it,
    so parallel workers, sweeps and Ray tasks sharing a cache train it once.
    ``on_train(path)`` is called before training starts.
    """
    cfg.validate()
    runtime = Runtime.from_config(cfg.runtime)
    corrupted, test = data or corrupted_data(cfg)
    c = corrupted.train
    fingerprint = split_fingerprint(c.images, corrupted.true_labels, c.ids)  # the clean split: labels before corruption
    _FINGERPRINTS.setdefault(data_id(cfg.data), fingerprint)
    path = model_path(cfg, fingerprint)
    if not is_complete(path):
        if not train:
            raise FileNotFoundError(f"no trained model in the cache for this config (looked for {path}); "
                                    "run `rem-unlearn train`")
        check_writable_folder(path.parent, f"runtime.cache_dir {cfg.runtime.cache_dir}")
        with FileLock(path.with_name(".lock")):
            if not is_complete(path):  # nobody trained it while we waited
                return _train(cfg, corrupted, test, runtime, path, on_train)
    model = load_weights(build_model(cfg.model, c.channels, c.num_classes, c.image_size), path)
    meta = read_meta(path)
    model = runtime.prepare(model).eval()
    return Task(cfg, corrupted, test, model, runtime, path, meta.get("train_seconds", 0.0), meta.get("history", []))


def _train(cfg: ExperimentConfig, corrupted: CorruptedData, test: ImageDataset, runtime: Runtime, path: Path,
           on_train: Callable[[Path], None] | None) -> Task:
    """Train and cache the model (the caller holds the model's lock)."""
    if on_train is not None:
        on_train(path)
    remove_temp_files(path.parent)  # left by a process killed while saving; we hold the lock
    c = corrupted.train
    torch.manual_seed(cfg.train.seed)
    model = runtime.prepare(build_model(cfg.model, c.channels, c.num_classes, c.image_size))
    start = time.perf_counter()
    history = train_model(model, c, cfg.train, runtime,
                          desc=f"train {cfg.corruption.kind}/{cfg.model.variant}")
    seconds = time.perf_counter() - start
    save_checkpoint(model, path, {"config": to_dict(cfg), "corrupted_ids": corrupted.corrupted_ids.tolist(),
                                  "corruption_info": corrupted.info, "train_seconds": seconds, "history": history})
    log.info("trained %s in %.1fs -> %s", cfg.corruption.kind, seconds, path)
    return Task(cfg, corrupted, test, model.eval(), runtime, path, seconds, history)


def checkpoint_experiment(path: str | Path) -> tuple[ExperimentConfig, dict]:
    """The experiment a package checkpoint was trained or unlearned in, and its sidecar."""
    meta = read_meta(path)
    if not isinstance(meta.get("config"), dict):
        if "model" in meta:
            raise CheckpointError(f"{path} was written by `unlearn --model` for your own model class "
                                  f"({meta['model']}), not by a preset; load it with your own code (its sidecar "
                                  "holds the forget/retain accuracy before and after)")
        raise CheckpointError(f"{path}: its sidecar has no experiment config (not written by rem-unlearn)")
    cfg = from_dict(ExperimentConfig, meta["config"])
    cfg.validate()
    return cfg, meta


def checkpoint_model(path: str | Path, meta: dict, task: Task) -> nn.Module:
    """The checkpoint's weights in the module they were saved from, on the task's device, in eval mode."""
    try:
        model = rebuild_model(meta.get("class"), meta.get("arch"), task.model)
    except (TypeError, ValueError) as exc:  # an arch record the class does not accept
        raise CheckpointError(f"the checkpoint's sidecar describes a {meta.get('class')} that cannot be built "
                              f"({exc})") from exc
    return task.runtime.prepare(load_weights(model, path)).eval()
