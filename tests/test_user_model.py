"""`rem-unlearn unlearn --model module:factory --train-data ...`: REM on a user's own classifier and data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rem_unlearn.cli import main
from rem_unlearn.data.user import UserDataError, folder_manifest, load_image_folder, load_npz, load_training_set
from rem_unlearn.models.factory import ModelFactoryError, build_user_model


def test_npz_layouts_and_ids(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 255, (5, 6, 6, 3)).astype(np.uint8)  # NHWC
    np.savez(tmp_path / "a.npz", images=images, labels=[0, 1, 2, 1, 0])
    ds = load_npz(tmp_path / "a.npz")
    assert ds.images.shape == (5, 3, 6, 6) and ds.ids.tolist() == [0, 1, 2, 3, 4] and ds.num_classes == 3
    assert torch.equal(ds.images[2].permute(1, 2, 0), torch.from_numpy(images[2]))
    assert len(ds.mean) == 3 and all(s > 0 for s in ds.std)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 6, 6), np.uint8)}, "missing array"),
    ({"images": np.zeros((4, 6, 6), np.float32), "labels": [0, 1, 0, 1]}, "uint8"),
    ({"images": np.zeros((4, 6, 6), np.uint8), "labels": [0, 1, 0]}, "4 images but 3 labels"),
    ({"images": np.zeros((4, 6, 6), np.uint8), "labels": [0, 1, 0, 1], "ids": [1, 1, 2, 3]}, "distinct"),
    ({"images": np.zeros((4, 6, 5), np.uint8), "labels": [0, 1, 0, 1]}, "square"),
])
def test_npz_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserDataError, match=message):
        load_npz(tmp_path / "bad.npz")


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((5, 5), value + i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_training_set(tmp_path)
    assert ds.class_names == ("cat", "dog") and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.ids.tolist() == [m[0] for m in folder_manifest(tmp_path)] == list(range(6))
    assert int(ds.images[4].flatten()[0]) == 201  # dog/1.png
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(tmp_path / "cat" / "odd.png")
    with pytest.raises(UserDataError, match="differ in size"):
        load_image_folder(tmp_path)


def test_factory_errors(user_setup) -> None:
    with pytest.raises(ModelFactoryError, match="module:factory"):
        build_user_model("no_colon_here")
    with pytest.raises(ModelFactoryError, match="no callable 'Nope'.*Net"):
        build_user_model(f"{user_setup['nets']}:Nope")
    with pytest.raises(ModelFactoryError, match="not a torch.nn.Module"):
        build_user_model(f"{user_setup['nets']}:not_a_model")


def test_cli_rem_on_user_model(user_setup, capsys) -> None:
    out = user_setup["root"] / "healed.safetensors"
    rc = main(["unlearn", "--model", f"{user_setup['nets']}:Net", "--model-kwargs", '{"num_classes": 3}',
               "--checkpoint", str(user_setup["ckpt"]), "--train-data", str(user_setup["npz"]),
               "--forget-ids", str(user_setup["forget"]), "--method", "rem", "--device", "cpu",
               "--set", "epochs=1", "--set", "optim.batch_size=16", "--set", "max_flush_epochs=2",
               "--set", "select_best=false",  # the untrained toy net would otherwise be kept as it is
               "--out", str(out)])
    assert rc == 0
    assert "forget_accuracy" in capsys.readouterr().out
    healed = load_file(str(out))
    original = load_file(str(user_setup["ckpt"]))
    assert {k: v.shape for k, v in healed.items()} == {k: v.shape for k, v in original.items()}
    assert any(not torch.equal(healed[k], original[k]) for k in original)  # the weights were unlearned
    fresh = build_user_model(f"{user_setup['nets']}:Net")
    fresh.load_state_dict(healed)  # the user's own code loads it
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["forget_ids"] == [1000, 1003, 1006] and meta["method"] == "rem"


@pytest.mark.parametrize("change, message", [
    ({"forget": "5\n"}, "not in the training set"),
    ({"model": "Nope"}, "no callable"),
    ({"kwargs": '{"num_classes": 7}'}, "does not fit"),
    ({"data": "missing.npz"}, "not found"),
])
def test_cli_errors_write_nothing(user_setup, capsys, change: dict, message: str) -> None:
    root = user_setup["root"]
    forget = user_setup["forget"]
    if "forget" in change:
        forget = root / "bad_ids.txt"
        forget.write_text(change["forget"])
    out = root / "never.safetensors"
    rc = main(["unlearn", "--model", f"{user_setup['nets']}:{change.get('model', 'Net')}",
               "--model-kwargs", change.get("kwargs", "{}"), "--checkpoint", str(user_setup["ckpt"]),
               "--train-data", str(root / change.get("data", "train.npz")), "--forget-ids", str(forget),
               "--device", "cpu", "--out", str(out)])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
