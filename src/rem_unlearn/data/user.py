"""A practitioner's own training set: a ``.npz`` of arrays, or a folder of images per class.

Both become an :class:`ImageDataset` with stable sample ids, so forget ids can
refer to them:

* ``.npz``: ``images`` (uint8; (N, H, W), (N, H, W, C) or (N, C, H, W)),
  ``labels`` (N integers), optional ``ids`` (N distinct integers, default
  0..N-1), optional ``mean``/``std`` (per channel, in [0, 1] units),
  optional ``class_names``.
* a folder ``root/<class>/<image>``: classes are the sub-folders in sorted
  order, ids are the positions in the sorted list of ``<class>/<file>``
  paths (:func:`folder_manifest` lists them, so a user can look ids up).

Mean and std default to the training set's own per-channel statistics.
Horizontal flips are off (they are wrong for digits and text); pass
``flip=True`` where they make sense.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class UserDataError(ValueError):
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
    return torch.from_numpy(np.ascontiguousarray(images))


def make_dataset(images: torch.Tensor, labels, ids=None, *, name: str = "user", num_classes: int | None = None,
                 mean=None, std=None, class_names=(), flip: bool = False) -> ImageDataset:
    """An :class:`ImageDataset` from tensors, with the checks a user's data needs."""
    labels = torch.as_tensor(np.asarray(labels)).long().flatten()
    n = images.shape[0]
    if n == 0:
        raise UserDataError(f"{name}: the training set is empty")
    if len(labels) != n:
        raise UserDataError(f"{name}: {n} images but {len(labels)} labels")
    ids = torch.arange(n) if ids is None else torch.as_tensor(np.asarray(ids)).long().flatten()
    if len(ids) != n:
        raise UserDataError(f"{name}: {n} images but {len(ids)} ids")
    if len(torch.unique(ids)) != n:
        raise UserDataError(f"{name}: sample ids must be distinct")
    if int(labels.min()) < 0:
        raise UserDataError(f"{name}: labels must be non-negative class indices")
    k = int(num_classes or max(int(labels.max()) + 1, len(class_names)))
    if int(labels.max()) >= k:
        raise UserDataError(f"{name}: label {int(labels.max())} is out of range for {k} classes")
    if mean is None or std is None:
        mean, std = _channel_stats(images)
    return ImageDataset(name, images, labels, ids, k, tuple(float(v) for v in np.ravel(mean)),
                        tuple(float(v) for v in np.ravel(std)), tuple(str(c) for c in class_names), flip=flip)


def load_npz(path: str | Path, flip: bool = False) -> ImageDataset:
    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise UserDataError(f"{path}: not a readable .npz file ({exc})") from exc
    missing = [k for k in ("images", "labels") if k not in arrays.files]
    if missing:
        raise UserDataError(f"{path}: missing array(s) {missing}; it has {sorted(arrays.files)} "
                            "(need images, labels; optional ids, mean, std, class_names)")
    get = lambda k: arrays[k] if k in arrays.files else None  # noqa: E731
    names = get("class_names")
    return make_dataset(_to_nchw(arrays["images"], str(path)), arrays["labels"], get("ids"), name=path.stem,
                        mean=get("mean"), std=get("std"), class_names=() if names is None else list(names),
                        flip=flip)


def folder_manifest(root: str | Path) -> list[tuple[int, str, int]]:
    """``(id, "<class>/<file>", label)`` for every image under ``root``, in id order."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserDataError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    rows: list[tuple[int, str, int]] = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((len(rows), f"{cls}/{f.name}", label))
    if not rows:
        raise UserDataError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders")
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
        except Exception as exc:
            raise UserDataError(f"{root / rel}: not a readable image ({exc})") from exc
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UserDataError(f"{root}: images differ in size or channels {sorted(shapes)[:4]}; resize them first")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
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
