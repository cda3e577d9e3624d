"""A user's images, of any size and mode, made into one uint8 array of square images and a checked
:class:`ImageDataset`.

A practitioner's photos come in many sizes and modes (grey, RGB, RGBA,
palette).  Every part of the package works on square images of one size, so
:class:`ImageFit` says how one image becomes the model's input: an optional
resize, then a centre crop to ``size`` x ``size``.  It comes from the model's
Hugging Face image processor where there is one, and from ``--image-size``
otherwise; it is recorded with the repaired model.  Images already at the final
square size are used as they are, so a prepared set is never resampled.

The mode is decided over the whole set, not by its first image: one colour
image makes every image RGB (grey ones are repeated over three channels), and a
set of only grey images stays one channel unless the model asks for three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from pathlib import Path

import numpy as np
import torch

from ..ids import as_integers
from .base import ImageDataset
from .errors import UserDataError
from .store import DiskImages, cached_store, use_disk

GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}  # PIL's numbering


@dataclass(frozen=True)
class ImageFit:
    """Resize (``resize``: the shortest edge in pixels, or an exact ``(height, width)``; None: no resize), then
    centre-crop to ``size`` x ``size``. ``source`` says where the setting came from."""

    size: int
    resize: int | tuple[int, int] | None = None
    resample: str = "bilinear"
    source: str = "--image-size"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise UserDataError(f"{self.source}: the image size must be a positive integer, got {self.size!r}")
        sides = self.resize if isinstance(self.resize, tuple) else (self.resize,) if self.resize else ()
        if any(not isinstance(s, int) or s < 1 for s in sides):
            raise UserDataError(f"{self.source}: the resize target must be positive pixels, got {self.resize!r}")
        if self.resample not in RESAMPLE.values():
            raise UserDataError(f"{self.source}: resample must be one of {', '.join(RESAMPLE.values())}, "
                                f"got {self.resample!r}")

    @classmethod
    def square(cls, size: int) -> "ImageFit":
        """``--image-size N``: the shortest edge to N, then the centre N x N."""
        return cls(size, size)

    def describe(self) -> dict:
        """For the repaired model's sidecar."""
        return {**asdict(self), "resize": list(self.resize) if isinstance(self.resize, tuple) else self.resize}

    def apply(self, img):
        """One PIL image at ``size`` x ``size``; an image already that size is returned as it is."""
        from PIL import Image

        if img.size == (self.size, self.size):
            return img
        method = getattr(Image.Resampling, self.resample.upper())
        if isinstance(self.resize, tuple):
            height, width = self.resize
            img = img.resize((width, height), method)
        elif self.resize:
            width, height = img.size
            short = min(width, height)
            target = (max(1, width * self.resize // short), max(1, height * self.resize // short))
            if target != img.size:
                img = img.resize(target, method)
        width, height = img.size
        left, top = (width - self.size) // 2, (height - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))  # PIL pads with black outside the image


def stack_images(count: int, open_image: Callable[[int], object], name: Callable[[int], str],
                 fit: ImageFit | None, channels: int | None = None, modes: Sequence[str] | None = None,
                 where: str = "the training set",
                 allocate: Callable[[tuple], np.ndarray] | None = None) -> np.ndarray:
    """``count`` images as one (N, H, W, C) uint8 array from ``allocate`` (a store's file; None: memory), written
    in place (no second copy of the set).

    ``open_image(i)`` returns a PIL image (a context manager); ``name(i)`` names it in errors. ``modes`` are the
    images' PIL modes where the caller knows them without decoding; otherwise a first pass reads the headers.
    ``channels`` (1 or 3) forces the mode, as a model with a fixed number of input channels needs.
    """
    from PIL import Image

    failures = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)  # PIL's ways to fail

    def read(i: int, decode: bool, mode: str = "RGB"):
        try:
            with open_image(i) as img:
                if not decode:
                    return img.mode, img.size
                return np.asarray(fitted(img.convert(mode)))
        except failures as exc:
            raise UserDataError(f"{name(i)}: not a readable image ({exc})") from exc

    def fitted(img):
        return img if fit is None else fit.apply(img)

    if count == 0:
        raise UserDataError(f"{where}: no images to read")
    if channels not in (None, 1, 3):
        raise UserDataError(f"the model takes {channels}-channel images; only 1 (grey) or 3 (RGB) can be made")
    if modes is None or fit is None:
        headers = [read(i, decode=False) for i in range(count)]
        modes = [m for m, _ in headers]
        if fit is None:
            sizes = sorted({s for _, s in headers})
            if len(sizes) > 1 or sizes[0][0] != sizes[0][1]:
                shown = ", ".join(f"{w}x{h}" for w, h in sizes[:4]) + (" ..." if len(sizes) > 4 else "")
                raise UserDataError(f"{where}: images are not all square and "
                                    f"of one size ({shown}); give --image-size N to resize them (shortest edge) "
                                    "and crop the centre N x N")
    mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if all(target_mode(m) == "L" for m in modes) else "RGB")
    first = read(0, decode=True, mode=mode)
    shape = (count, *first.shape[:2], 1 if first.ndim == 2 else first.shape[2])
    out = np.empty(shape, np.uint8) if allocate is None else allocate(shape)
    out[0] = first.reshape(out.shape[1:])
    for i in range(1, count):
        arr = read(i, decode=True, mode=mode)
        if arr.shape[:2] != out.shape[1:3]:  # only reachable without a fit: the headers said otherwise
            raise UserDataError(f"{name(i)}: {arr.shape[1]}x{arr.shape[0]}, not {out.shape[2]}x{out.shape[1]} "
                                "as the first image; give --image-size N")
        out[i] = arr.reshape(out.shape[1:])
    return out


def load_images(count: int, open_image: Callable[[int], object], name: Callable[[int], str], fit: ImageFit | None,
                channels: int | None, *, where: str, store: str, nbytes: int, source: Callable[[], dict]):
    """:func:`stack_images` (N, C, H, W): in memory, or in a store on disk (``store``: memory, disk, or auto by the
    estimated ``nbytes``; ``source()`` describes the inputs, the store's key; :mod:`.store`)."""
    def build(allocate=None):
        return stack_images(count, open_image, name, fit, channels, where=where, allocate=allocate)

    if use_disk(store, nbytes):
        return cached_store(Path(where).name, source(), build)
    return as_nchw(build(), where)


def target_mode(mode: str) -> str:
    """"L" for a grey PIL mode, "RGB" for any other (alpha dropped, palettes expanded)."""
    return "L" if mode in GREY_MODES else "RGB"


def _channel_stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in pixel / 255 units, a chunk of images at a time (a store is never loaded)."""
    chunks = images.chunks() if isinstance(images, DiskImages) else images.split(4096)
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for chunk in chunks:
        x = chunk.double().div_(255.0)
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / count
    var = (squares - count * mean.square()) / max(1, count - 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def as_nchw(images: np.ndarray, where: str) -> torch.Tensor:
    if images.dtype != np.uint8:
        raise UserDataError(f"{where}: images must be uint8 (0..255), got {images.dtype}")
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        if images.shape[-1] in (1, 3, 4) and images.shape[1] not in (1, 3, 4):
            images = images.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    else:
        raise UserDataError(f"{where}: images must have shape (N, H, W), (N, H, W, C) or (N, C, H, W), "
                            f"got {images.shape}")
    if images.shape[-1] != images.shape[-2]:
        raise UserDataError(f"{where}: images must be square, got {images.shape[-2]}x{images.shape[-1]}")
    if images.shape[-1] == 0 or images.shape[1] == 0:
        raise UserDataError(f"{where}: images of shape {images.shape[1:]} hold no pixels")
    return torch.from_numpy(np.ascontiguousarray(images))


def per_channel(values, channels: int, what: str, where: str) -> tuple[float, ...]:
    """``mean`` or ``std``: one finite value per channel (a positive one for ``std``)."""
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (ValueError, TypeError):
        raise UserDataError(f"{where}: {what} must be numbers, one per channel") from None
    if arr.size != channels or not np.isfinite(arr).all():
        raise UserDataError(f"{where}: {what} needs {channels} finite value(s), one per channel, "
                            f"got {arr.tolist()[:8]}")
    if what == "std" and (arr <= 0).any():
        raise UserDataError(f"{where}: std must be positive, got {arr.tolist()}")
    return tuple(float(v) for v in arr)


def make_dataset(images: torch.Tensor, labels, ids=None, *, name: str = "user", num_classes: int | None = None,
                 mean=None, std=None, class_names=(), flip: bool = False) -> ImageDataset:
    """An :class:`ImageDataset` from tensors, with the checks a user's data needs."""
    labels = as_integers(labels, f"{name}: labels", UserDataError)
    n = images.shape[0]
    if n == 0:
        raise UserDataError(f"{name}: the training set is empty")
    if len(labels) != n:
        raise UserDataError(f"{name}: {n} images but {len(labels)} labels")
    ids = torch.arange(n) if ids is None else as_integers(ids, f"{name}: ids", UserDataError)
    if len(ids) != n:
        raise UserDataError(f"{name}: {n} images but {len(ids)} ids")
    if len(torch.unique(ids)) != n:
        raise UserDataError(f"{name}: sample ids must be distinct")
    if int(labels.min()) < 0:
        raise UserDataError(f"{name}: labels must be non-negative class indices")
    class_names = tuple(str(c) for c in np.ravel(np.asarray(class_names, dtype=object)))
    k = int(num_classes or len(class_names) or int(labels.max()) + 1)
    if int(labels.max()) >= k:
        raise UserDataError(f"{name}: label {int(labels.max())} is out of range for {k} classes"
                            f"{f' ({len(class_names)} class names)' if class_names else ''}")
    if (mean is None) != (std is None):
        raise UserDataError(f"{name}: give both mean and std, or neither")
    if mean is None:
        mean, std = _channel_stats(images)
    channels = images.shape[1]
    return ImageDataset(name, images, labels, ids, k, per_channel(mean, channels, "mean", name),
                        per_channel(std, channels, "std", name), class_names, flip=flip)
