"""Hugging Face image classifiers: a ``save_pretrained`` folder in, a ``save_pretrained`` folder out.

:class:`HFClassifier` wraps ``pixel_values -> .logits`` so that every method,
:func:`rem_unlearn.expand` and the metrics see a plain classifier that maps a
batch of images to logits; the Hugging Face model stays a child module
(``.hf``), so saving back means discarding the capacity, unwrapping and
calling ``save_pretrained``.

* :func:`from_pretrained` loads a local folder only (``local_files_only``:
  nothing downloads) and refuses a folder whose weights do not fit its
  config (Hugging Face would silently initialise the missing ones).
* :class:`Preprocessing` reads ``preprocessor_config.json``: the processor's
  rescale + normalisation become the dataset's mean/std in this package's
  units (pixels / 255), and its resize and centre crop become the
  :class:`~rem_unlearn.data.images.ImageFit` that training images of other
  sizes are brought to.
* :func:`save_pretrained` writes the folder whole into a temporary folder and
  renames it into place, with the processor config and a ``rem_unlearn.json``
  record beside the weights; ``transformers`` loads it unchanged.

``transformers`` is the optional extra ``rem-unlearn[hf]``; nothing here
imports it before it is needed.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..data.images import RESAMPLE, ImageFit
from ..errors import UserError, require_extra
from ..files import atomic_folder, check_output_folder, json_text, read_json_object

PROCESSOR_FILE = "preprocessor_config.json"
RECORD_FILE = "rem_unlearn.json"  # written into every output folder; --force replaces only such a folder


class HFModelError(UserError, ValueError):
    """A Hugging Face model folder that cannot be loaded, or does not fit the training data."""


def transformers_module():
    return require_extra("transformers", "hf", "a Hugging Face model (--hf-model)")


@contextlib.contextmanager
def _quiet(transformers) -> Iterator[None]:
    """No progress bars or info lines from transformers while loading and saving."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


@dataclass(frozen=True)
class Preprocessing:
    """What the folder's image processor does to a uint8 image before the model sees it."""

    mean: tuple[float, ...] | None = None  # in this package's units: (pixel / 255 - mean) / std
    std: tuple[float, ...] | None = None
    fit: ImageFit | None = None  # its resize and centre crop; None = images fed as given
    source: str = ""

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) of the model's input, where the processor fixes it."""
        return None if self.fit is None else (self.fit.size, self.fit.size)

    @classmethod
    def read(cls, folder: str | Path) -> "Preprocessing":
        path = Path(folder) / PROCESSOR_FILE
        if not path.is_file():
            return cls()
        cfg = read_json_object(path, HFModelError, "image processor config")
        return cls(*_normalisation(cfg, path), _fit(cfg, path), str(path))


def _numbers(value: Any, path: Path, key: str) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise HFModelError(f"{path}: {key} must be numbers, got {value!r}") from None
    if not out or (key != "image_mean" and min(out) <= 0):
        raise HFModelError(f"{path}: {key} must be {'non-empty' if key == 'image_mean' else 'positive'}, "
                           f"got {value!r}")
    return out


def _normalisation(cfg: dict, path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The processor's ``(uint8 * rescale - image_mean) / image_std`` as ``(uint8 / 255 - mean) / std``."""
    scale = _numbers(cfg.get("rescale_factor", 1 / 255), path, "rescale_factor")[0] \
        if cfg.get("do_rescale", True) else 1.0
    if cfg.get("do_normalize", True) and "image_mean" in cfg and "image_std" in cfg:
        mean, std = _numbers(cfg["image_mean"], path, "image_mean"), _numbers(cfg["image_std"], path, "image_std")
        if len(mean) != len(std):
            raise HFModelError(f"{path}: image_mean has {len(mean)} values but image_std {len(std)}")
    else:
        mean, std = (0.0,), (1.0,)
    unit = 255.0 * scale  # one package unit (pixel / 255) in the processor's units
    return tuple(m / unit for m in mean), tuple(s / unit for s in std)


def _fit(cfg: dict, path: Path) -> ImageFit | None:
    """The processor's resize and centre crop as an :class:`ImageFit`, or None when it does neither."""

    def hw(value: Any) -> tuple[int, int] | None:
        if isinstance(value, int):
            return (value, value)
        if isinstance(value, dict) and "height" in value and "width" in value:
            return (int(value["height"]), int(value["width"]))
        return None

    resize: int | tuple[int, int] | None = None
    final = None
    if cfg.get("do_resize", False):
        size = cfg.get("size")
        if isinstance(size, dict) and "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            crop_pct = cfg.get("crop_pct")
            # ConvNeXt-style processors resize the shortest edge to edge / crop_pct and crop edge x edge below 384.
            resize = int(edge / crop_pct) if crop_pct and edge < 384 else edge
            final = (edge, edge)
        else:
            resize = final = hw(size)
            if resize is None:
                raise HFModelError(f"{path}: cannot read the resize target size={size!r}")
    if cfg.get("do_center_crop", False) and hw(cfg.get("crop_size")) is not None:
        final = hw(cfg.get("crop_size"))
    if final is None:
        return None
    if final[0] != final[1]:
        raise HFModelError(f"{path}: the processor makes {final[0]}x{final[1]} inputs; rem-unlearn trains on square "
                           "images only")
    return ImageFit(final[0], resize, RESAMPLE.get(cfg.get("resample"), "bilinear"), str(path))


class HFClassifier(nn.Module):
    """A Hugging Face image classifier as a plain classifier: ``forward(x) = hf(pixel_values=x).logits``.

    ``arch`` (the config) lets methods that start from scratch (Retrain, the
    random Bad Teacher) build a fresh model of the same architecture.
    """

    def __init__(self, hf: nn.Module | None = None, *, config: dict | None = None):
        super().__init__()
        if hf is None:
            if config is None:
                raise TypeError("HFClassifier needs a model or a config")
            transformers = transformers_module()
            config = transformers.AutoConfig.for_model(**config)
            hf = transformers.AutoModelForImageClassification.from_config(config)
        self.hf = hf
        self.arch = {"config": hf.config.to_dict()}
        self.source: Path | None = None
        self.preprocessing = Preprocessing()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits

    @property
    def num_channels(self) -> int | None:
        return getattr(self.hf.config, "num_channels", None)

    def check_images(self, channels: int, size: int, example: torch.Tensor | None = None) -> None:
        """One clear error when images of ``channels`` x ``size`` x ``size`` do not fit the model."""
        where = f"the model in {self.source}" if self.source else "the model"
        expected = self.num_channels
        if expected is not None and expected != channels:
            raise HFModelError(f"{where} expects {expected}-channel images (config.json num_channels) but the "
                               f"training images have {channels}; convert them first")
        want = self.preprocessing.size
        if want is not None and want != (size, size):
            raise HFModelError(f"{where} expects {want[0]}x{want[1]} images (its image processor resizes to that, "
                               f"{PROCESSOR_FILE}) but the training images are {size}x{size}")
        if example is not None:
            was_training = self.training
            try:
                with torch.no_grad():
                    self.eval()(example)
            except Exception as exc:  # the model's own forward: any failure means these images do not fit
                image_size = getattr(self.hf.config, "image_size", None)
                hint = f" (config.json image_size is {image_size})" if image_size else ""
                raise HFModelError(f"{where} fails on {channels}x{size}x{size} images{hint}: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
            finally:
                self.train(was_training)


def from_pretrained(folder: str | Path) -> HFClassifier:
    """Load a local ``save_pretrained`` folder of an image classifier (float32, eval mode); nothing downloads."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HFModelError(f"--hf-model {folder}: not a folder (give the folder save_pretrained wrote)")
    if not (folder / "config.json").is_file():
        raise HFModelError(f"--hf-model {folder}: no config.json (give the folder save_pretrained wrote)")
    preprocessing = Preprocessing.read(folder)
    transformers = transformers_module()
    try:
        with _quiet(transformers):
            hf, info = transformers.AutoModelForImageClassification.from_pretrained(
                folder, local_files_only=True, output_loading_info=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # transformers' ways to refuse a folder
        if "mismatched" in str(exc):
            raise HFModelError(f"--hf-model {folder}: its weights do not fit its config.json (tensors of other "
                               "shapes than the config describes)") from exc
        raise HFModelError(f"--hf-model {folder}: cannot load it as an image classifier "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    bad = {k: sorted(info.get(k) or ())[:4] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        raise HFModelError(f"--hf-model {folder}: its weights do not fit its config.json "
                           f"({'; '.join(f'{k}: {v}' for k, v in bad.items())})")
    model = HFClassifier(hf.eval())
    model.source = folder
    model.preprocessing = preprocessing
    return model


def saved_dtype(folder: Path) -> torch.dtype | None:
    """The dtype the folder's weights were saved in (config.json), to save the result the same way."""
    try:
        cfg = read_json_object(folder / "config.json", ValueError, "model config")
    except ValueError:
        return None
    name = cfg.get("dtype") or cfg.get("torch_dtype")
    dtype = getattr(torch, str(name), None) if name else None
    return dtype if isinstance(dtype, torch.dtype) else None


def unwrap(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside ``model``, with any redirection capacity discarded."""
    from . import discard, is_expanded

    if is_expanded(model):
        model = discard(model)
    if not isinstance(model, HFClassifier):
        raise TypeError(f"{type(model).__name__} is not an HFClassifier (load it with from_pretrained)")
    return model.hf


def save_pretrained(model: nn.Module, out: str | Path, record: dict | None = None, *, force: bool = False,
                    inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write ``model`` (an :class:`HFClassifier`, expanded or not) as a ``save_pretrained`` folder.

    The capacity is discarded first; the weights are saved in the source
    folder's dtype, the source's image processor config is copied, and
    ``record`` goes to ``rem_unlearn.json``.  ``out`` may not be, hold or lie in
    an input (the source folder included); an existing ``out`` is replaced only
    with ``force`` and only when rem-unlearn wrote it.
    """
    import copy

    source = getattr(model, "source", None)
    out = check_output_folder(out, "--out", inputs=[source, *inputs], force=force, marker=RECORD_FILE)
    hf = copy.deepcopy(unwrap(model)).cpu().eval()
    dtype = saved_dtype(source) if source else None
    if dtype is not None and dtype != torch.float32:
        hf = hf.to(dtype)
    transformers = transformers_module()
    with atomic_folder(out) as tmp, _quiet(transformers):
        hf.save_pretrained(tmp)
        if source and (Path(source) / PROCESSOR_FILE).is_file():
            shutil.copyfile(Path(source) / PROCESSOR_FILE, tmp / PROCESSOR_FILE)
        (tmp / RECORD_FILE).write_text(json_text({"source": str(source) if source else None, **(record or {})}),
                                       encoding="utf-8")
    return out
