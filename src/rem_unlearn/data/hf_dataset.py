"""A Hugging Face ``datasets`` dataset as a training set: a ``Dataset`` in the API, a ``save_to_disk`` folder in the CLI.

The image column is the one ``Image`` feature (or named), the label column the
one ``ClassLabel`` feature, else a column called ``label`` or ``labels`` (or
named); class names come from the ``ClassLabel``.  Sample ids come from an id
column where one is named, otherwise from the row index (0..N-1, as
``dataset[i]`` counts them).  Images go through the same :mod:`.images` path as an
image folder, so they may differ in size and mode.

``datasets`` is the optional extra ``rem-unlearn[datasets]``; nothing here
imports it before it is needed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import require_extra
from .base import ImageDataset
from .errors import UserDataError
from .images import ImageFit, load_images, make_dataset

SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)


@dataclass(frozen=True)
class DatasetColumns:
    """Which columns (and which split of a ``DatasetDict``) hold the training set; None: detected."""

    image: str | None = None
    label: str | None = None
    id: str | None = None
    split: str | None = None

    def given(self) -> list[str]:
        """The flags set, as the CLI names them."""
        return [f"--{k}-column" if k != "split" else "--split" for k, v in vars(self).items() if v is not None]


def datasets_module():
    return require_extra("datasets", "datasets", "a Hugging Face dataset as training data")


def is_saved_dataset(folder: Path) -> bool:
    return folder.is_dir() and any((folder / marker).is_file() for marker in SAVED_MARKERS)


def load_saved_dataset(folder: str | Path, columns: DatasetColumns = DatasetColumns(), *, flip: bool = False,
                       fit: ImageFit | None = None, channels: int | None = None, store: str = "auto") -> ImageDataset:
    """A ``save_to_disk`` folder (a ``Dataset``, or one split of a ``DatasetDict``)."""
    folder = Path(folder)
    datasets = datasets_module()
    try:
        saved = datasets.load_from_disk(str(folder))
    except (OSError, ValueError, KeyError) as exc:  # datasets' ways to refuse a folder
        raise UserDataError(f"{folder}: not a readable save_to_disk folder ({type(exc).__name__}: {exc})") from exc
    if isinstance(saved, datasets.DatasetDict):
        splits = sorted(saved)
        split = columns.split or ("train" if "train" in saved or len(splits) != 1 else splits[0])
        if split not in saved:
            raise UserDataError(f"{folder}: no split {split!r}; give --split, one of: {', '.join(splits)}")
        saved = saved[split]
    elif columns.split is not None:
        raise UserDataError(f"{folder}: --split {columns.split} needs a DatasetDict; this folder holds one Dataset")
    return from_hf_dataset(saved, columns, flip=flip, fit=fit, channels=channels, name=folder.name, store=store)


def _one_of(found: list[str], what: str, flag: str, names: list[str], name: str) -> str:
    if len(found) == 1:
        return found[0]
    said = f"several ({', '.join(found)})" if found else "none"
    raise UserDataError(f"{name}: cannot tell the {what} column: {said} found; give {flag}, one of: "
                        f"{', '.join(names)}")


def from_hf_dataset(dataset, columns: DatasetColumns = DatasetColumns(), *, flip: bool = False,
                    fit: ImageFit | None = None, channels: int | None = None, name: str = "hf-dataset",
                    store: str = "memory") -> ImageDataset:
    """A ``datasets.Dataset`` as an :class:`ImageDataset`; ids from ``columns.id``, else the row index."""
    datasets = datasets_module()
    if not isinstance(dataset, datasets.Dataset):
        raise UserDataError(f"{name}: expected a datasets.Dataset, got {type(dataset).__name__} (pick a split of a "
                            "DatasetDict)")
    features, names = dataset.features, list(dataset.column_names)
    for flag, column in (("--image-column", columns.image), ("--label-column", columns.label),
                         ("--id-column", columns.id)):
        if column is not None and column not in names:
            raise UserDataError(f"{name}: {flag} {column!r} is not a column; columns: {', '.join(names)}")
    image = columns.image or _one_of([c for c in names if isinstance(features[c], datasets.Image)], "image",
                                     "--image-column", names, name)
    if not isinstance(features[image], datasets.Image):
        raise UserDataError(f"{name}: column {image!r} holds {features[image]}, not images")
    class_labels = [c for c in names if isinstance(features[c], datasets.ClassLabel)]
    label = columns.label or _one_of(class_labels or [c for c in names if c in ("label", "labels")], "label",
                                     "--label-column", names, name)
    class_names = features[label].names if isinstance(features[label], datasets.ClassLabel) else ()
    encoded = dataset.cast_column(image, datasets.Image(decode=False))[image]  # bytes or paths, decoded one by one

    def open_image(i: int):
        from PIL import Image

        item = encoded[i]
        if item is None:
            raise UserDataError(f"{name}: row {i} has no image")
        return Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"])

    side = fit.size if fit else 256  # without a fit, a guess for store=auto (datasets give no sizes cheaply)
    images = load_images(len(dataset), open_image, lambda i: f"{name}: row {i} ({image})", fit, channels,
                         where=name, store=store, nbytes=len(dataset) * side * side * 3,
                         source=lambda: {"dataset": getattr(dataset, "_fingerprint", None) or name, "image": image,
                                         "fit": fit and fit.describe(), "channels": channels})
    ids = None if columns.id is None else list(dataset[columns.id])
    return make_dataset(images, list(dataset[label]), ids, name=name,
                        num_classes=len(class_names) or None, class_names=class_names, flip=flip)
