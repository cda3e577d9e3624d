"""From a config to a trained, corrupted model: data, corruption, model, training and its cache."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .checkpoint import cache_key, load_weights, read_meta, save_checkpoint
from .config import DataConfig, ExperimentConfig, to_dict
from .corruptions import CorruptedData, corrupt
from .data import ImageDataset, load_dataset
from .metrics import Evaluator
from .models import build_model
from .training import Runtime, train_model

log = logging.getLogger(__name__)


def load_data(cfg: DataConfig) -> tuple[ImageDataset, ImageDataset]:
    """Training split (optionally a seeded subset; ids stay those of the full split) and test split."""
    train = load_dataset(cfg.name, "train", root=cfg.root, download=cfg.download)
    test = load_dataset(cfg.name, "test", root=cfg.root, download=cfg.download)
    if cfg.train_size is not None and cfg.train_size < len(train):
        rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.subset_seed))[:cfg.train_size]
        train = train.subset(torch.sort(rows).values)
    return train, test


def model_key(cfg: ExperimentConfig) -> str:
    data = {k: v for k, v in to_dict(cfg.data).items() if k not in ("root", "download")}
    return cache_key({"data": data, "corruption": to_dict(cfg.corruption), "model": to_dict(cfg.model),
                      "train": to_dict(cfg.train), "precision": cfg.runtime.precision})


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


def prepare(cfg: ExperimentConfig, *, train: bool = True, data: tuple[CorruptedData, ImageDataset] | None = None) -> Task:
    """Load or train the corrupted model for ``cfg``; the cache key covers every input that changes it."""
    cfg.validate()
    runtime = Runtime.from_config(cfg.runtime)
    corrupted, test = data or corrupted_data(cfg)
    c = corrupted.train
    model = build_model(cfg.model, c.channels, c.num_classes, c.image_size)
    path = Path(cfg.runtime.cache_dir).expanduser() / "models" / model_key(cfg) / "model.safetensors"
    if path.exists() and path.with_suffix(".json").exists():
        load_weights(model, path)
        meta = read_meta(path)
        model = runtime.prepare(model).eval()
        return Task(cfg, corrupted, test, model, runtime, path, meta.get("train_seconds", 0.0), meta.get("history", []))
    if not train:
        raise FileNotFoundError(f"no trained model in the cache for this config (looked for {path}); run `rem-unlearn train`")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, c.channels, c.num_classes, c.image_size)
    model = runtime.prepare(model)
    start = time.perf_counter()
    history = train_model(model, c, cfg.train, runtime, patch_size=cfg.corruption.patch_size,
                          desc=f"train {cfg.corruption.kind}/{cfg.model.variant}")
    seconds = time.perf_counter() - start
    save_checkpoint(model, path, {"config": to_dict(cfg), "corrupted_ids": corrupted.corrupted_ids.tolist(),
                                  "corruption_info": corrupted.info, "train_seconds": seconds, "history": history})
    log.info("trained %s in %.1fs -> %s", cfg.corruption.kind, seconds, path)
    return Task(cfg, corrupted, test, model.eval(), runtime, path, seconds, history)
