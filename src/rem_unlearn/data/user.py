"""A practitioner's own training set: a ``.npz`` of arrays, or a folder of images per class.

Both become an :class:`ImageDataset` with stable sample ids, so forget ids can
refer to them:

* ``.npz``: ``images`` (uint8; (N, H, W), (N, H, W, C) or (N, C, H, W)),
  ``labels`` (N integers), optional ``ids`` (N distinct integers, default
  0..N-1), optional ``mean``/``std`` (per channel, in [0, 1] units),
  optional ``class_names``.
* a folder ``root/<class>/<image>``: classes are the sub-folders in sorted
  order, ids are the positions in the sorted list of ``<class>/<file>``
  paths (:func:`folder_manifest` lists them, so a user can look ids up).  A
  class folder without images is an error: it would be a class the model
  never sees.

The number of classes is the number of class names (``class_names``, the
class folders) when there are any; otherwise the largest label + 1 stands in
until :func:`rem_unlearn.api.match_classes` takes it from the model's outputs.

Mean and std default to the training set's own per-channel statistics.
Horizontal flips are off (they are wrong for digits and text); pass
``flip=True`` where they make sense.
"""

from __future__ import annotations

from pathlib import Path

import zipfile
import zlib

import numpy as np
import torch

from ..errors import UserError
from ..ids import as_integers
from .base import ImageDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UserDataError(UserError, ValueError):
    """A training set given by the user cannot be read as images with labels and ids."""


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _to_nchw(images: np.ndarray, where: str) -> torch.Tensor:
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


def load_npz(path: str | Path, flip: bool = False) -> ImageDataset:
    path = Path(path)
    unreadable = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)  # numpy's and zipfile's failures
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as exc:
        raise UserDataError(f"{path}: not a readable .npz file ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserDataError(f"{path}: a single .npy array, not a .npz archive of named arrays")
    with archive:
        try:
            arrays = {k: archive[k] for k in archive.files}  # read everything now: a truncated member fails here
        except unreadable as exc:
            raise UserDataError(f"{path}: not a readable .npz file ({exc})") from exc
    odd = sorted(k for k, v in arrays.items() if not isinstance(v, np.ndarray))
    if odd:  # numpy hands back raw bytes for a member that is not in .npy format
        raise UserDataError(f"{path}: member(s) {odd} are not numpy arrays (write the file with numpy.savez)")
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise UserDataError(f"{path}: missing array(s) {missing}; it has {sorted(arrays)} "
                            "(need images, labels; optional ids, mean, std, class_names)")
    names = arrays.get("class_names")
    return make_dataset(_to_nchw(arrays["images"], str(path)), arrays["labels"], arrays.get("ids"), name=path.stem,
                        mean=arrays.get("mean"), std=arrays.get("std"), class_names=() if names is None else names,
                        flip=flip)


def _class_folders(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserDataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    return classes


def folder_manifest(root: str | Path) -> list[tuple[int, str, int]]:
    """``(id, "<class>/<file>", label)`` for every image under ``root``, in id order."""
    root = Path(root)
    rows: list[tuple[int, str, int]] = []
    for label, cls in enumerate(_class_folders(root)):
        files = [f for f in sorted((root / cls).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise UserDataError(f"{root / cls}: an empty class folder (no {', '.join(IMAGE_SUFFIXES)} files); "
                                "remove it or add its images")
        rows += [(len(rows) + i, f"{cls}/{f.name}", label) for i, f in enumerate(files)]
    return rows


def load_image_folder(root: str | Path, flip: bool = False) -> ImageDataset:
    from PIL import Image  # a dependency of matplotlib

    root = Path(root)
    manifest = folder_manifest(root)
    arrays = []
    mode = None
    for _, rel, _ in manifest:
        try:
            with Image.open(root / rel) as img:
                mode = mode or ("L" if img.mode in ("1", "L", "I;16", "I") else "RGB")
                arrays.append(np.asarray(img.convert(mode)))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # PIL's ways to fail
            raise UserDataError(f"{root / rel}: not a readable image ({exc})") from exc
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UserDataError(f"{root}: images differ in size or channels {sorted(shapes)[:4]}; resize them first")
    classes = _class_folders(root)
    return make_dataset(_to_nchw(np.stack(arrays), str(root)), [m[2] for m in manifest],
                        [m[0] for m in manifest], name=root.name, num_classes=len(classes),
                        class_names=classes, flip=flip)


def load_training_set(path: str | Path, flip: bool = False) -> ImageDataset:
    """A ``.npz`` file or an image folder, by what ``path`` is."""
    path = Path(path)
    if not path.exists():
        raise UserDataError(f"training set not found: {path}")
    if path.is_dir():
        return load_image_folder(path, flip=flip)
    if path.suffix == ".npz":
        return load_npz(path, flip=flip)
    raise UserDataError(f"{path}: give a .npz file or a folder of images per class")
