"""The one training loop: batching, mixed precision, optimiser/schedule, NaN guard.

Pre-training and every unlearning method build on :class:`Batcher` (uint8
images on the device -> augmented, normalised, triggered float batches) and
:class:`Trainer` (one optimiser step with autocast and a finite-loss check).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .config import ConfigError, OptimConfig, RuntimeConfig, TrainConfig
from .data.augment import augment as augment_images
from .data.augment import max_normalized_value, normalize, stamp_trigger
from .data.base import ImageDataset
from .errors import UserError
from .models.gates import gates, partition


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y, ids) -> scalar loss


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN/inf; the caller's model is left untouched (methods work on copies)."""


@dataclass
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    progress: bool = True

    @classmethod
    def from_config(cls, cfg: RuntimeConfig | None = None) -> "Runtime":
        cfg = cfg or RuntimeConfig()
        cfg.validate()
        device = resolve_device(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[resolve_precision(cfg, device)]
        # channels_last pays off on CPU (about 2x with bf16, see research/speed/throughput.py); on CUDA cuDNN picks.
        return cls(device, dtype, cfg.channels_last and device.type == "cpu", cfg.progress)

    @property
    def precision(self) -> str:
        """The autocast in effect: bf16, fp16 or fp32 (none)."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.autocast_dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


def resolve_device(cfg: RuntimeConfig) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda: no CUDA device is available here; use --device auto or cpu")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def native_bf16(device_type: str) -> bool:
    """Whether this machine's ``device_type`` computes in bf16 in hardware.  A CPU without AVX512-BF16 or AMX
    emulates it, at about a tenth of fp32's speed (research/speed/throughput.py on an AVX2-only CPU)."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private; a build without them: no
    return device_type == "cpu" and any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(cfg: RuntimeConfig, device: torch.device | None = None) -> str:
    """``runtime.precision`` as it runs on this machine: ``auto`` is bf16 where the hardware has it, else
    fp32; fp16 autocast is bf16 on a CPU."""
    # An explicit cuda is not checked here: keys are made on drivers that may have no GPU.
    device_type = (device or (torch.device("cuda") if cfg.device == "cuda" else resolve_device(cfg))).type
    if cfg.precision == "auto":
        return "bf16" if native_bf16(device_type) else "fp32"
    return "bf16" if cfg.precision == "fp16" and device_type == "cpu" else cfg.precision


def quiet() -> bool:
    return os.environ.get("REM_UNLEARN_QUIET", "") not in ("", "0")


class Batcher:
    """Ready model inputs from an :class:`ImageDataset` held on the device."""

    def __init__(self, data: ImageDataset, runtime: Runtime, *, augment: bool = False, crop_padding: int = 2,
                 seed: int = 0):
        self.data, self.runtime = data, runtime
        dev = runtime.device
        self.images = data.images.to(dev)
        self.labels = data.labels.to(dev)
        self.ids = data.ids.to(dev)
        self.triggered = data.triggered.to(dev)
        self.mean = torch.tensor(data.mean, device=dev)
        self.std = torch.tensor(data.std, device=dev)
        self.trigger_value = max_normalized_value(data.mean, data.std)
        self.augment, self.crop_padding = augment, crop_padding
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def batch(self, rows: torch.Tensor, *, augment: bool | None = None,
              triggered: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = rows.to(self.runtime.device)
        imgs = self.images[rows]
        if self.augment if augment is None else augment:
            imgs = augment_images(imgs, self.generator, pad=self.crop_padding, flip=self.data.flip)
        x = normalize(imgs, self.mean, self.std)
        trig = self.triggered[rows] if triggered is None else triggered.to(x.device)
        if bool(trig.any()):
            x = stamp_trigger(x, trig, self.data.trigger_size, self.trigger_value)
        if self.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[rows], self.ids[rows]

    def epoch(self, rows: torch.Tensor, batch_size: int, *, shuffle: bool = True,
              augment: bool | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        rows = torch.as_tensor(rows, dtype=torch.long)
        if shuffle:
            rows = rows[torch.randperm(len(rows), generator=self.generator)]
        for start in range(0, len(rows), batch_size):
            yield self.batch(rows[start:start + batch_size], augment=augment)


def make_optimizer(params, cfg: OptimConfig, total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.schedule == "constant":
        factor: Callable[[int], float] = lambda step: 1.0
    else:
        warm = max(1, int(cfg.warmup_fraction * total_steps))
        horizon = cfg.decay_horizon * total_steps

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return max(0.0, 1.0 - (step - warm) / max(1.0, horizon - warm))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


class Trainer:
    """One optimiser step at a time, with the finite-loss guard every method needs."""

    def __init__(self, model: nn.Module, cfg: OptimConfig, total_steps: int, runtime: Runtime,
                 params=None, what: str = "training", grad_masks: dict[nn.Parameter, torch.Tensor] | None = None):
        """``grad_masks`` maps parameters to boolean masks: only the True entries are ever updated.

        Their gradients are masked before the update and the other entries are
        restored afterwards, so weight decay and momentum cannot move them either.
        """
        self.model, self.runtime, self.what = model, runtime, what
        self.optimizer, self.scheduler = make_optimizer(params if params is not None else model.parameters(),
                                                        cfg, total_steps)
        self.scaler = torch.amp.GradScaler(enabled=runtime.autocast_dtype is torch.float16)
        self.steps = 0
        self.grad_masks: list[tuple[nn.Parameter, torch.Tensor, torch.Tensor]] = []
        for p, mask in (grad_masks or {}).items():
            if mask.shape != p.shape:
                raise ValueError(f"grad mask of shape {tuple(mask.shape)} for a parameter of shape {tuple(p.shape)}")
            mask = mask.to(device=p.device, dtype=torch.bool)
            self.grad_masks.append((p, mask, p.detach().clone()))

    def step(self, loss: torch.Tensor, count: bool = True) -> float:
        """Backward and update; ``count=False`` keeps the step out of the budget (REM's flush)."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{self.what}: loss became {value} at step {self.steps}; lower the learning rate "
                                     "or use runtime.precision=fp32. The input model was not modified.")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        for p, mask, _ in self.grad_masks:
            if p.grad is not None:
                p.grad.mul_(mask)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.grad_masks:
            with torch.no_grad():
                for p, mask, frozen in self.grad_masks:
                    p.copy_(torch.where(mask, p, frozen))
        if count:  # uncounted steps (REM's flush) neither use the budget nor move the schedule
            self.scheduler.step()
            self.steps += 1
        return value


def run_epoch(trainer: Trainer, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], loss_fn: LossFn,
              *, max_steps: int | None = None, count: bool = True, autocast: bool = True) -> tuple[float, int]:
    """The one training loop: per batch, the loss (under autocast) and one optimiser step.

    It stops when the batches end or once the trainer has made ``max_steps``
    counted steps; ``count=False`` makes steps outside the budget (REM's flush).
    ``autocast=False`` leaves mixed precision to a loss made of several passes
    (REM): one autocast region around all of them would share the bf16 weight
    copies and add their gradients in bf16.  Pre-training, every epoch-based
    method and REM all step through it.  Returns the mean loss per row (NaN
    without a step) and the number of steps.
    """
    loss_sum, rows, steps = 0.0, 0, 0
    for x, y, ids in batches:
        if max_steps is not None and trainer.steps >= max_steps:
            break
        with trainer.runtime.autocast() if autocast else contextlib.nullcontext():
            loss = loss_fn(x, y, ids)
        loss_sum += trainer.step(loss, count=count) * len(y)
        rows += len(y)
        steps += 1
    return (loss_sum / rows if rows else math.nan), steps


def progress(iterable, total: int | None, desc: str, runtime: Runtime):
    return tqdm(iterable, total=total, desc=desc, leave=False, disable=not runtime.progress or quiet(),
                dynamic_ncols=True)


def train_model(model: nn.Module, train: ImageDataset, cfg: TrainConfig, runtime: Runtime, *,
                desc: str = "train", max_steps: int | None = None) -> list[dict]:
    """Pre-train ``model`` on ``train`` (all rows) with per-example masks; returns the loss history.

    The last epoch's model is kept: the official code picks the best *test*
    accuracy, which would peek at the test set.  ``max_steps`` caps the
    optimiser steps (the schedule then spans ``max_steps``).
    """
    torch.manual_seed(cfg.seed)
    batcher = Batcher(train, runtime, augment=cfg.augment, crop_padding=cfg.crop_padding,
                      seed=cfg.seed)
    steps_per_epoch = math.ceil(len(train) / cfg.optim.batch_size)
    total = steps_per_epoch * cfg.epochs if max_steps is None else min(max_steps, steps_per_epoch * cfg.epochs)
    trainer = Trainer(model, cfg.optim, total, runtime, what=desc)
    rows = torch.arange(len(train))
    history = []
    model.train()
    bar = progress(range(cfg.epochs), cfg.epochs, desc, runtime)
    def loss_fn(x: torch.Tensor, y: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        with maybe_partition(model, "own", ids, None):
            return F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)

    for epoch in bar:
        loss, steps = run_epoch(trainer, batcher.epoch(rows, cfg.optim.batch_size), loss_fn, max_steps=total)
        if steps:
            history.append({"epoch": epoch + 1, "loss": loss})
            bar.set_postfix(loss=f"{loss:.3f}")
        if trainer.steps >= total:
            break
    model.eval()
    return history


@torch.inference_mode()
def predict(model: nn.Module, batcher: Batcher, rows: torch.Tensor, *, mode: str = "drop",
            triggered: torch.Tensor | None = None, shared_ids: torch.Tensor | None = None,
            batch_size: int = 256, augment: bool = False) -> torch.Tensor:
    """Predicted classes on the images as stored, or on random views drawn by ``batcher`` (``augment``);
    ``triggered`` overrides the stored trigger flags.

    Runs under ``inference_mode``; batches of 256 measured faster than 1024 on CPU.
    """
    was_training = model.training
    model.eval()
    rows = torch.as_tensor(rows, dtype=torch.long)
    out = []
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        trig = None if triggered is None else triggered[start:start + batch_size]
        x, _, ids = batcher.batch(r, augment=augment, triggered=trig)
        with batcher.runtime.autocast(), maybe_partition(model, mode, ids, shared_ids):
            out.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def maybe_partition(model: nn.Module, mode: str, ids: torch.Tensor, shared_ids: torch.Tensor | None):
    """The partition context, or nothing for a model without gates (e.g. an exported one)."""
    if not gates(model):
        return contextlib.nullcontext()
    return partition(model, mode, ids=ids, shared_ids=shared_ids)


def accuracy(model: nn.Module, batcher: Batcher, rows: torch.Tensor, labels: torch.Tensor | None = None,
             **kw) -> float:
    """Accuracy in percent on ``rows`` against ``labels`` (default: the stored labels)."""
    rows = torch.as_tensor(rows, dtype=torch.long)
    if len(rows) == 0:
        return float("nan")
    pred = predict(model, batcher, rows, **kw)
    target = batcher.data.labels[rows] if labels is None else labels
    return 100.0 * float((pred == target.cpu()).float().mean())


BATCHNORM = nn.modules.batchnorm._BatchNorm


@contextlib.contextmanager
def kept_statistics(model: nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm for the block (batch statistics), but its running statistics stay as they are."""
    norms = [(m, m.momentum) for m in model.modules() if isinstance(m, BATCHNORM)]
    for m, _ in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in norms:
            m.momentum = momentum


@contextlib.contextmanager
def frozen_batchnorm(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers in eval mode for the block: they normalise with their running statistics and
    do not update them, so a batch made of one kind of sample (e.g. only D_f) cannot shift them."""
    norms = [m for m in model.modules() if isinstance(m, BATCHNORM) and m.training]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batcher: Batcher, rows: torch.Tensor, *, mode: str = "drop",
                          shared_ids: torch.Tensor | None = None, batch_size: int = 256,
                          max_rows: int | None = 4096, seed: int = 0) -> int:
    """Re-estimate the running statistics of every BatchNorm that ``mode`` uses, on ``rows`` (non-augmented).

    The statistics become the exact average over the batches (momentum None), so
    they describe the model as it is used in ``mode`` (drop: at inference) on these
    images, not the mixture of modes and batches that training left behind.
    BatchNorms the mode never calls (e.g. those of widened theta_o2 units in drop
    mode) keep theirs.  Returns the number of rows used (a seeded sample of at
    most ``max_rows``).
    """
    norms = [m for m in model.modules() if isinstance(m, BATCHNORM) and m.track_running_stats]
    rows = torch.as_tensor(rows, dtype=torch.long)
    if not norms or len(rows) == 0:
        return 0
    if max_rows is not None and len(rows) > max_rows:
        rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:max_rows]]
    saved = {m: m.momentum for m in norms}

    def first_use(m: nn.Module, _inputs) -> None:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        handles.pop(m).remove()

    handles = {m: m.register_forward_pre_hook(first_use) for m in norms}
    was_training = model.training
    model.train()
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            if len(chunk) < 2 and start:
                break  # train-mode BN cannot normalise a single row; the average already has the rest
            x, _, ids = batcher.batch(chunk, augment=False)
            with batcher.runtime.autocast(), maybe_partition(model, mode, ids, shared_ids):
                model(x)
    finally:
        for h in handles.values():
            h.remove()
        for m, momentum in saved.items():
            m.momentum = momentum
        model.train(was_training)
    return len(rows)
