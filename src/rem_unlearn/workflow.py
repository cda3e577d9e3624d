"""The steps of the commands between parsing and printing, as library functions with explicit parameters, so that
the command line and Python code share them: a user's model (check, load, unlearn, write back), a preset's or a
checkpoint's experiment, and outputs checked before any work and again before writing.  Error messages name
the command's flags (``--out``, ``--train-data``), as that is what a user of the command gave.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from .api import UnlearnResult, UserModelResult, forget_rows, match_classes, unlearn_user_rows
from .checkpoint import load_weights, save_checkpoint, sidecar_path, versions
from .config import ConfigError, ExperimentConfig, RuntimeConfig, load_config, to_dict
from .data.base import ImageDataset
from .data.hf_dataset import DatasetColumns, datasets_module, is_saved_dataset
from .data.images import ImageFit, per_channel
from .data.user import load_training_set
from .discovery import DiscoveryResult
from .experiment import Task, checkpoint_experiment, checkpoint_model, models_dir, prepare
from .files import PathError, check_input, check_output, check_output_folder, check_writable_folder
from .ids import as_integers, read_ids
from .models import discard
from .models.factory import build_user_model, input_channels
from .presets import experiment_preset
from .tracking import check_tracker, default_log_dir
from .training import Batcher, Runtime

MODEL_SUFFIXES = (".safetensors",)  # the format `unlearn` writes


def experiment_config(preset: str, config: str | Path | None = None, overrides: Iterable[str] = (),
                      device: str | None = None) -> ExperimentConfig:
    """The preset with the config file and the dotted ``key=value`` overrides applied (``device`` last)."""
    overrides = list(overrides) + ([f"runtime.device={device}"] if device else [])
    return load_config(ExperimentConfig, config, overrides, base=experiment_preset(preset))


def experiment_of(checkpoint: str | Path | None, preset: str, config: str | Path | None = None,
                  overrides: Iterable[str] = (), device: str | None = None) -> tuple[ExperimentConfig, dict | None]:
    """The experiment of ``checkpoint``'s sidecar (and the sidecar), else of the preset, config and overrides."""
    if checkpoint:
        check_input(checkpoint, "--checkpoint")
        return checkpoint_experiment(checkpoint)
    return experiment_config(preset, config, overrides, device), None


def model_of(checkpoint: str | Path | None, task: Task, meta: dict | None) -> nn.Module:
    """The ``checkpoint`` model when one was given, else the task's trained model."""
    return task.model if meta is None else checkpoint_model(checkpoint, meta, task)


def load_task(cfg: ExperimentConfig, meta: dict | None, checkpoint: str | Path | None, forget_ids=None
              ) -> tuple[Task, nn.Module, torch.Tensor | None, torch.Tensor | None]:
    """The prepared task, the model to work on (``checkpoint``'s, else the task's trained one), and the forget
    ids read from their file with their rows, validated before any work (nothing is written on error)."""
    forget = read_ids(forget_ids) if forget_ids else None
    task = prepare(cfg)
    model = model_of(checkpoint, task, meta)
    return task, model, forget, None if forget is None else forget_rows(task.corrupted.train, forget)


def input_files(*, checkpoint=None, train_data=None, forget_ids=None, config=None, hf_folder=None,
                factory: str | None = None) -> list[Path]:
    """Every file a command reads: an output may never be one of them."""
    files = [checkpoint, train_data, forget_ids, config, hf_folder]
    if checkpoint:
        files.append(sidecar_path(Path(checkpoint)))
    module = (factory or "").rpartition(":")[0]
    if module.endswith(".py"):
        files.append(module)
    return [Path(f) for f in files if f]


def check_model_output(out: str | Path, inputs: list[Path], force: bool, cache_dir: str | None = None) -> Path:
    """``out`` and its JSON sidecar: a ``.safetensors`` path that is no input, no folder and not taken."""
    out = check_output(out, "--out", suffixes=MODEL_SUFFIXES, inputs=inputs, force=force)
    check_output(sidecar_path(out), f"--out {out}: its sidecar", inputs=inputs, force=force)
    if cache_dir:
        models = os.path.realpath(models_dir(cache_dir))
        if os.path.realpath(out).startswith(models + os.sep):
            raise PathError(f"--out {out} is inside the model cache {models}; choose a path outside it")
    return out


def save_model_output(model: nn.Module, out: Path, meta: dict, inputs: list[Path], force: bool) -> None:
    """Write the unlearned model, checking ``out`` once more: the run took a while."""
    check_model_output(out, inputs, force)
    save_checkpoint(model, out, meta)


def write_task_model(result: UnlearnResult, task: Task, forget: torch.Tensor, metrics: dict, out: Path,
                     source_checkpoint: str | Path, inputs: list[Path], force: bool,
                     keep_capacity: bool = False) -> None:
    """A preset model's result with its sidecar: without the redirection capacity unless ``keep_capacity`` (or it
    has none)."""
    final = result.model
    if not keep_capacity:
        try:
            final = discard(result.model)
        except TypeError:
            pass
    meta = {"config": to_dict(task.cfg), "method": result.method, "method_config": result.config,
            "forget_ids": forget.tolist(), "metrics": metrics, "wall_time_s": result.wall_time_s,
            "source_checkpoint": str(source_checkpoint)}
    save_model_output(final, out, meta, inputs, force)


def check_discovery_outputs(out: str | Path, ranking: str | Path | None, inputs: list[Path], force: bool
                            ) -> tuple[Path, Path | None]:
    """``out`` (the chosen ids, .txt) and ``ranking`` (.csv), before any work."""
    out = check_output(out, "--out", suffixes=(".txt",), inputs=inputs, force=force)
    if ranking:
        ranking = check_output(ranking, "--ranking", suffixes=(".csv",), inputs=inputs, force=force)
    return out, ranking or None


def write_discovery(result: DiscoveryResult, out: Path, ranking: Path | None, inputs: list[Path], force: bool) -> None:
    """The chosen ids (and the ranking), checking the outputs once more: the run took a while."""
    check_discovery_outputs(out, ranking, inputs, force)
    result.write_ids(out)
    if ranking:
        result.write_ranking(ranking)


def report_folders(results_dir: str | Path, out: str | Path | None) -> tuple[Path, Path]:
    """The results folder (read) and the report's folder (default: the same; written)."""
    results = check_input(results_dir, "results folder", folder_ok=True)
    if not results.is_dir():
        raise PathError(f"results folder {results}: not a folder")
    out = Path(out or results)
    if out.exists() and not out.is_dir():
        raise PathError(f"--out {out}: not a folder")
    check_writable_folder(out, f"--out {out}")
    return results, out


def tracking_dir(kind: str | None, log_dir: str | Path | None, base: str | Path = ".") -> Path | None:
    """The tracker's folder (default under ``base``), checked with the tracker's package before any work."""
    if not kind:
        return None
    folder = Path(log_dir) if log_dir else default_log_dir(kind, base)
    check_tracker(kind, folder)
    return folder


@dataclass
class LoadedModel:
    """A user's model on the runtime's device, its training set (classes from the model) and the forget set."""

    runtime: Runtime
    train: ImageDataset
    model: nn.Module
    forget_ids: torch.Tensor
    forget_rows: torch.Tensor  # validated once, here
    image_fit: ImageFit | None = None  # how the training images were resized and cropped; None: as stored

    def unlearn(self, method: str = "rem", **kwargs) -> UserModelResult:
        """:func:`rem_unlearn.unlearn_user_model` on the loaded model; ``kwargs`` are its keyword arguments."""
        return unlearn_user_rows(self.model, self.train, self.forget_rows, method, runtime=self.runtime, **kwargs)


@dataclass
class UserModel:
    """Where a user's classifier comes from: ``factory`` (``module:factory``) with ``checkpoint`` (its state_dict)
    and ``model_kwargs``, or ``hf_folder`` (a ``save_pretrained`` folder); with the training set and how its
    images are normalised (``mean``/``std`` override the folder's or the data's), augmented and made square
    (``image_size`` overrides the image processor's resize and crop)."""

    train_data: str | Path | None
    factory: str | None = None
    checkpoint: str | Path | None = None
    model_kwargs: dict | None = None  # None: not given
    hf_folder: str | Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    flip: bool = False
    device: str = "auto"
    image_size: int | None = None
    columns: DatasetColumns = field(default_factory=DatasetColumns)  # of a Hugging Face dataset folder
    store: str = "auto"  # a folder or dataset in memory, or on disk (auto: by size)

    @property
    def hf(self) -> bool:
        return bool(self.hf_folder)

    @property
    def label(self) -> str:
        """A short name for runs: the folder's or the factory module's."""
        source = str(self.hf_folder or self.factory)
        return Path(source.rpartition(":")[0] or source).name

    def validate(self, keep_capacity: bool = False) -> None:
        """``factory`` needs its checkpoint; ``hf_folder`` brings its own weights; both need ``train_data``."""
        if self.hf:
            clash = [flag for flag, v in (("--model", self.factory), ("--checkpoint", self.checkpoint),
                                          ("--model-kwargs", self.model_kwargs is not None),
                                          ("--keep-capacity", keep_capacity)) if v]
            if clash:
                raise ConfigError(f"--hf-model reads the model and its weights from its folder and writes a "
                                  f"save_pretrained folder; drop {', '.join(clash)}")
            if not self.train_data:
                raise ConfigError("--hf-model needs --train-data (the training set as .npz or an image folder)")
            check_input(self.hf_folder, "--hf-model", folder_ok=True)
        else:
            missing = [flag for flag, v in (("--model", self.factory), ("--checkpoint", self.checkpoint),
                                            ("--train-data", self.train_data)) if not v]
            if missing:
                raise ConfigError(f"a user model needs --model, --checkpoint and --train-data; missing "
                                  f"{', '.join(missing)}")
            check_input(self.checkpoint, "--checkpoint")
        check_input(self.train_data, "--train-data", folder_ok=True)
        if is_saved_dataset(Path(self.train_data)):
            datasets_module()  # the extra, before any work
        if (self.mean or self.std) and not (self.mean and self.std):
            raise ConfigError("give both --mean and --std, or neither")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"--image-size must be a positive number of pixels, got {self.image_size}")

    def _ids_from(self) -> dict:
        """Where a Hugging Face dataset's ids came from, for the record."""
        if not is_saved_dataset(Path(self.train_data)):
            return {}
        return {"ids_from": f"column {self.columns.id}" if self.columns.id else "row index"}

    def check_output(self, out: str | Path, inputs: list[Path], force: bool) -> Path:
        """``out`` before any work: a ``save_pretrained`` folder (the extra imported now), else ``.safetensors``."""
        if self.hf:
            from .models.hf import RECORD_FILE, transformers_module

            transformers_module()
            return check_output_folder(out, "--out", inputs=inputs, force=force, marker=RECORD_FILE)
        return check_model_output(out, inputs, force)

    def load(self, forget_ids: str | Path | Iterable[int] | torch.Tensor) -> LoadedModel:
        """The model, its training set (brought to the model's channels and input size) and the forget ids (a file or
        integers), validated against the training set before any work; call :meth:`validate` first."""
        forget = read_ids(forget_ids) if isinstance(forget_ids, (str, Path)) else as_integers(forget_ids, "forget ids")
        # channels_last stays off: arbitrary user layers are not all safe with it on CPU.
        runtime = Runtime.from_config(RuntimeConfig(device=self.device, channels_last=False))
        fit = None if self.image_size is None else ImageFit.square(self.image_size)
        model = self.build(self.hf_folder if self.hf else self.checkpoint)
        if self.hf:
            fit = fit or model.preprocessing.fit
        train = load_training_set(self.train_data, flip=self.flip, fit=fit, channels=input_channels(model),
                                  columns=self.columns, store=self.store)
        if self.hf:
            model.check_images(train.channels, train.image_size)
            pre = model.preprocessing
            if pre.mean is not None:  # the image processor's normalisation, unless mean/std say otherwise
                train = replace(train, mean=per_channel(pre.mean, train.channels, "image_mean", pre.source),
                                std=per_channel(pre.std, train.channels, "image_std", pre.source))
        if self.mean and self.std:
            train = replace(train, mean=per_channel(self.mean, train.channels, "mean", "--mean"),
                            std=per_channel(self.std, train.channels, "std", "--std"))
        rows = forget_rows(train, forget)  # validated before any work; nothing is written on error
        model = runtime.prepare(model)
        x, _, _ = Batcher(train, runtime).batch(torch.arange(min(2, len(train))), augment=False)
        if self.hf:
            model.check_images(train.channels, train.image_size, x)
        return LoadedModel(runtime, match_classes(model, x, train), model, forget, rows, fit)

    def build(self, weights: str | Path) -> nn.Module:
        """The model with ``weights``: a ``save_pretrained`` folder with ``--hf-model``, else a state_dict file for
        the factory."""
        if self.hf:
            from .models.hf import from_pretrained

            return from_pretrained(weights)
        return load_weights(build_user_model(self.factory, self.model_kwargs or {}), weights)

    def other_weights(self, loaded: LoadedModel, weights: str | Path) -> nn.Module:
        """The same model with other weights (a repaired model), on the loaded model's device."""
        return loaded.runtime.prepare(self.build(weights)).eval()

    def write(self, loaded: LoadedModel, repaired: UserModelResult, out: Path, inputs: list[Path], force: bool) -> None:
        """The repaired model where the user's code loads it: a state_dict with a sidecar, or a
        ``save_pretrained`` folder; ``out`` is checked once more, as the run took a while."""
        result, train = repaired.result, loaded.train
        meta = {"train_data": str(self.train_data), "method": result.method, "method_config": result.config,
                "forget_ids": loaded.forget_ids.tolist(), "num_classes": train.num_classes,
                "before": repaired.before, "after": repaired.after, "wall_time_s": result.wall_time_s,
                "expansion_report": repaired.expansion_report,
                "image_fit": None if loaded.image_fit is None else loaded.image_fit.describe(),
                "image_channels": train.channels, **self._ids_from()}
        if self.hf:
            from .models.hf import save_pretrained

            save_pretrained(result.model, out, {**meta, "mean": train.mean, "std": train.std, "versions": versions()},
                            force=force, inputs=inputs)
            return
        save_model_output(repaired.model.cpu(), out, {"model": self.factory, "model_kwargs": self.model_kwargs or {},
                                                      **meta, "source_checkpoint": str(self.checkpoint)}, inputs, force)
