"""A Hugging Face ``datasets`` dataset as training data: the API, and `unlearn`/`discover` on a save_to_disk folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import snapshot
from rem_unlearn.cli import main
from rem_unlearn.data.errors import UserDataError
from rem_unlearn.data.hf_dataset import DatasetColumns, from_hf_dataset, load_saved_dataset
from rem_unlearn.data.images import ImageFit
from rem_unlearn.ids import read_ids

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")

N = 48


def photos(rng: np.random.Generator) -> tuple[list, list[int]]:
    """N images of three sizes, grey and colour, whose brightness says their class (of 3)."""
    images, labels = [], []
    for i in range(N):
        label = i % 3
        h, w = [(8, 8), (10, 14), (16, 9)][(i // 3) % 3]
        pixels = (label * 80 + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)
        images.append(Image.fromarray(pixels) if i % 2 else Image.fromarray(pixels[..., 0]))
        labels.append(label)
    return images, labels


def dataset(with_ids: bool = True):
    images, labels = photos(np.random.default_rng(0))
    columns = {"photo": images, "kind": labels}
    features = {"photo": datasets.Image(), "kind": datasets.ClassLabel(names=["ant", "bee", "cow"])}
    if with_ids:
        columns["uid"] = [5000 + 7 * i for i in range(N)]
        features["uid"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def test_columns_are_detected_and_ids_come_from_a_column_or_the_row_index() -> None:
    ds = dataset()
    train = from_hf_dataset(ds, DatasetColumns(id="uid"), fit=ImageFit.square(8))
    assert train.images.shape == (N, 3, 8, 8) and train.class_names == ("ant", "bee", "cow")
    assert train.labels.tolist() == [i % 3 for i in range(N)] and train.ids[:2].tolist() == [5000, 5007]
    assert from_hf_dataset(ds, fit=ImageFit.square(8), channels=1).ids.tolist() == list(range(N))
    plain = datasets.Dataset.from_dict({"img": list(ds["photo"])[:6], "label": [0, 1, 2, 0, 1, 2]},
                                       features=datasets.Features({"img": datasets.Image(),
                                                                   "label": datasets.Value("int64")}))
    assert from_hf_dataset(plain, fit=ImageFit.square(8)).num_classes == 3  # a plain "label" column
    with pytest.raises(UserDataError, match="are not all square and of one size"):
        from_hf_dataset(ds)  # three sizes and no fit


@pytest.mark.parametrize("columns, message", [
    (DatasetColumns(image="nope"), "--image-column 'nope' is not a column; columns: photo, kind, uid"),
    (DatasetColumns(image="kind"), "column 'kind' holds ClassLabel"),
    (DatasetColumns(id="kind"), "sample ids must be distinct"),
])
def test_bad_columns_are_one_clear_error(columns: DatasetColumns, message: str) -> None:
    with pytest.raises(UserDataError, match=message):
        from_hf_dataset(dataset(), columns, fit=ImageFit.square(8))


def test_two_image_columns_must_be_named() -> None:
    ds = dataset()
    ds = ds.add_column("mask", ds.cast_column("photo", datasets.Image(decode=False))["photo"],
                       feature=datasets.Image())
    with pytest.raises(UserDataError, match=r"cannot tell the image column: several \(photo, mask\) found; "
                                            "give --image-column"):
        from_hf_dataset(ds, fit=ImageFit.square(8))
    assert from_hf_dataset(ds, DatasetColumns(image="mask"), fit=ImageFit.square(8)).images.shape[0] == N


def test_a_dataset_dict_folder_takes_its_train_split(tmp_path: Path) -> None:
    datasets.DatasetDict({"train": dataset(), "test": dataset().select(range(6))}).save_to_disk(tmp_path / "dd")
    assert len(load_saved_dataset(tmp_path / "dd", fit=ImageFit.square(8))) == N
    assert len(load_saved_dataset(tmp_path / "dd", DatasetColumns(split="test"), fit=ImageFit.square(8))) == 6
    with pytest.raises(UserDataError, match="no split 'val'; give --split, one of: test, train"):
        load_saved_dataset(tmp_path / "dd", DatasetColumns(split="val"), fit=ImageFit.square(8))


@pytest.fixture
def saved(user_setup) -> dict:
    """The user's Net and checkpoint, a save_to_disk folder of mixed photos, and forget ids from its id column."""
    dataset().save_to_disk(user_setup["root"] / "photos")
    (user_setup["root"] / "known.txt").write_text("5000\n5021\n5042\n")
    return user_setup


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_unlearn_and_discover_on_a_saved_dataset(saved, capsys, monkeypatch, store: str) -> None:
    root = saved["root"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    common = ["--model", f"{saved['nets']}:Net", "--checkpoint", str(saved["ckpt"]), "--train-data",
              str(root / "photos"), "--id-column", "uid", "--image-size", "8", "--store", store,
              "--forget-ids", str(root / "known.txt")]
    assert main(["discover", *common, "--scorer", "similarity", "--budget", "6", "--out", str(root / "found.txt")]) == 0
    found = read_ids(root / "found.txt")
    assert len(found) == 6 and torch.isin(read_ids(root / "known.txt"), found).all()
    out = root / "healed.safetensors"
    rc = main(["unlearn", *common[:-2], "--forget-ids", str(root / "found.txt"), "--method", "rem", "--device", "cpu",
               "--set", "epochs=1", "--set", "optim.batch_size=16", "--set", "max_flush_epochs=1",
               "--set", "select_best=false", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["ids_from"] == "column uid" and meta["forget_ids"] == sorted(found.tolist())
    assert meta["image_fit"]["size"] == 8 and meta["image_channels"] == 1
    assert len(list((root / "cache").rglob("*.u8"))) == (store == "disk")  # one store, written once for both


@pytest.mark.parametrize("extra, message", [
    (["--image-column", "nope"], "--image-column 'nope' is not a column"),
    (["--split", "test"], "needs a DatasetDict"),
    ([], "not in the training set"),  # the ids are row indices without --id-column: 5000 is not one
])
def test_refused_runs_are_one_line_and_write_nothing(saved, capsys, extra: list[str], message: str) -> None:
    root = saved["root"]
    before = snapshot(root)
    rc = main(["unlearn", "--model", f"{saved['nets']}:Net", "--checkpoint", str(saved["ckpt"]), "--train-data",
               str(root / "photos"), "--image-size", "8", "--forget-ids", str(root / "known.txt"), "--device", "cpu",
               "--out", str(root / "never.safetensors"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(root) == before


def test_column_flags_need_a_dataset_folder(user_setup, capsys) -> None:
    rc = main(["unlearn", "--model", f"{user_setup['nets']}:Net", "--checkpoint", str(user_setup["ckpt"]),
               "--train-data", str(user_setup["npz"]), "--forget-ids", str(user_setup["forget"]),
               "--label-column", "y", "--out", str(user_setup["root"] / "never.safetensors")])
    assert rc == 2 and "--label-column apply to a Hugging Face dataset folder" in capsys.readouterr().err
