"""A practitioner's own training set: a ``.npz`` of arrays, or a folder of images per class
(a Hugging Face dataset: :mod:`.hf_dataset`).

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

from .base import ImageDataset
from .errors import UserDataError
from .images import ImageFit, as_nchw, load_images, make_dataset, stack_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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
    return make_dataset(as_nchw(arrays["images"], str(path)), arrays["labels"], arrays.get("ids"), name=path.stem,
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


def load_image_folder(root: str | Path, flip: bool = False, fit: ImageFit | None = None,
                      channels: int | None = None, store: str = "memory") -> ImageDataset:
    """Images of any size and mode under ``root/<class>/``, made square by ``fit`` (see :mod:`.images`); held in
    memory, or in a store on disk (``store``: memory, disk, or auto by size; see :mod:`.store`)."""
    from PIL import Image

    root = Path(root)
    manifest = folder_manifest(root)

    def source() -> dict:
        files = [(rel, st.st_size, st.st_mtime_ns) for _, rel, _ in manifest for st in [(root / rel).stat()]]
        return {"folder": str(root.resolve()), "files": files, "fit": fit and fit.describe(), "channels": channels}

    images = load_images(len(manifest), lambda i: Image.open(root / manifest[i][1]),
                         lambda i: f"{root}/{manifest[i][1]}", fit, channels, where=str(root), store=store,
                         nbytes=len(manifest) * _pixels(root / manifest[0][1], fit) * 3, source=source)
    classes = _class_folders(root)
    return make_dataset(images, [m[2] for m in manifest], [m[0] for m in manifest], name=root.name,
                        num_classes=len(classes), class_names=classes, flip=flip)


def _pixels(first_image: Path, fit: ImageFit | None) -> int:
    """Pixels per image once fitted (the first image's, without a fit): the size estimate for ``store=auto``."""
    if fit is not None:
        return fit.size ** 2
    from PIL import Image

    try:
        with Image.open(first_image) as img:
            return img.size[0] * img.size[1]
    except (OSError, ValueError):  # unreadable: the read proper names it
        return 0


def refit(data: ImageDataset, fit: ImageFit | None, channels: int | None = None) -> ImageDataset:
    """Stored arrays (a ``.npz``) brought to ``fit``'s size and ``channels``; unchanged where they already are."""
    same_size = fit is None or data.image_size == fit.size
    same_channels = channels is None or channels == data.channels
    if same_size and same_channels:
        return data
    from PIL import Image

    mode = {1: "L", 3: "RGB"}.get(channels or data.channels, "RGB")
    pixels = data.images.permute(0, 2, 3, 1).numpy()
    arrays = stack_images(len(data), lambda i: Image.fromarray(pixels[i].squeeze(-1) if pixels.shape[-1] == 1
                                                                else pixels[i]),
                          lambda i: f"{data.name}: image {i}", fit, channels, modes=[mode] * len(data),
                          where=data.name)
    images = as_nchw(arrays, data.name)
    mean, std = (data.mean, data.std) if same_channels else (None, None)
    return make_dataset(images, data.labels, data.ids, name=data.name, num_classes=data.num_classes,
                        mean=mean, std=std, class_names=data.class_names, flip=data.flip)


def load_training_set(path: str | Path, flip: bool = False, fit: ImageFit | None = None,
                      channels: int | None = None, columns=None, store: str = "auto") -> ImageDataset:
    """A ``.npz`` file, a Hugging Face ``save_to_disk`` folder (``columns``: a
    :class:`~.hf_dataset.DatasetColumns`) or an image folder, by what ``path`` is; made square by ``fit`` with
    ``channels`` (None: the set's own). Folders and datasets go to a store on disk where ``store`` says so
    (auto: when they would take more than half the available memory); a ``.npz`` is read into memory."""
    from .hf_dataset import DatasetColumns, is_saved_dataset, load_saved_dataset

    path = Path(path)
    columns = columns or DatasetColumns()
    if not path.exists():
        raise UserDataError(f"training set not found: {path}")
    if is_saved_dataset(path):
        return load_saved_dataset(path, columns, flip=flip, fit=fit, channels=channels, store=store)
    if columns.given():
        raise UserDataError(f"{path}: {', '.join(columns.given())} apply to a Hugging Face dataset folder "
                            "(save_to_disk) only")
    if path.is_dir():
        return load_image_folder(path, flip=flip, fit=fit, channels=channels, store=store)
    if path.suffix == ".npz":
        return refit(load_npz(path, flip=flip), fit, channels)
    raise UserDataError(f"{path}: give a .npz file, a folder of images per class or a Hugging Face dataset folder "
                        "(save_to_disk)")
