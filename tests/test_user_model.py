"""`rem-unlearn unlearn --model module:factory --train-data ...`: REM on a user's own classifier and data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rem_unlearn.cli import main
from rem_unlearn.data.images import ImageFit
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
    with pytest.raises(UserDataError, match=r"not all square and of one size \(5x5, 7x7\); give --image-size"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, fit=ImageFit.square(5)).images.shape == (7, 1, 5, 5)


def test_image_fit_resizes_the_shortest_edge_and_crops_the_centre() -> None:
    from PIL import Image

    columns = np.tile(np.arange(16, dtype=np.uint8) * 10, (10, 1))  # 10 rows x 16 columns, brightness = column
    out = np.asarray(ImageFit.square(5).apply(Image.fromarray(columns)))
    assert out.shape == (5, 5)  # 16x10 -> 8x5 (columns 5, 25, .., 145) -> the centre 5x5: columns 1..5 of 8
    assert np.abs(out[0].astype(int) - [25, 45, 65, 85, 105]).max() <= 3
    same = Image.fromarray(np.arange(25, dtype=np.uint8).reshape(5, 5))
    assert ImageFit.square(5).apply(same) is same  # already the model's size: used as it is
    exact = ImageFit(4, (6, 4), "nearest", "processor").apply(Image.fromarray(columns))  # (height, width)
    assert np.asarray(exact).shape == (4, 4)
    assert ImageFit(3, (6, 4)).describe() == {"size": 3, "resize": [6, 4], "resample": "bilinear",
                                              "source": "--image-size"}
    with pytest.raises(UserDataError, match="resample must be one of"):
        ImageFit(4, 4, "cubic")


def test_one_colour_image_makes_the_set_rgb(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full((6, 6), 50, np.uint8)).save(tmp_path / cls / "grey.png")
    assert load_image_folder(tmp_path).channels == 1  # all grey: one channel
    Image.fromarray(np.full((6, 6, 4), (200, 10, 10, 128), np.uint8), "RGBA").save(tmp_path / "b" / "red.png")
    ds = load_image_folder(tmp_path)
    assert ds.channels == 3 and ds.images[0].tolist() == [[[50] * 6] * 6] * 3  # grey repeated over RGB
    assert ds.images[2, :, 0, 0].tolist() == [200, 10, 10]  # alpha dropped, not the first image's mode
    assert load_image_folder(tmp_path, channels=1).channels == 1  # a grey model gets grey images
    with pytest.raises(UserDataError, match="only 1 .grey. or 3 .RGB."):
        load_image_folder(tmp_path, channels=2)


def test_cli_unlearn_on_a_folder_of_mixed_sizes_and_modes(user_setup) -> None:
    """The practitioner's folder: three sizes, grey and colour (RGB, palette), made into the model's input."""
    from PIL import Image

    root, rng = user_setup["root"], np.random.default_rng(0)
    shapes = [(8, 8), (12, 9), (7, 15)]  # (height, width)
    for label, cls in enumerate(("ant", "bee", "cow")):
        (root / "photos" / cls).mkdir(parents=True)
        for i in range(12):
            h, w = shapes[i % 3]
            pixels = (label * 80 + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)
            img = Image.fromarray(pixels) if i % 2 else Image.fromarray(pixels[..., 0]).convert("P")
            img.save(root / "photos" / cls / f"{i:02d}.png")
    (root / "forget.txt").write_text("0\n5\n13\n")
    out = root / "healed.safetensors"
    args = ["unlearn", "--model", f"{user_setup['nets']}:Net", "--checkpoint", str(user_setup["ckpt"]),
            "--train-data", str(root / "photos"), "--forget-ids", str(root / "forget.txt"), "--device", "cpu",
            "--set", "epochs=1", "--set", "optim.batch_size=16", "--set", "max_flush_epochs=1",
            "--set", "select_best=false", "--out", str(out)]
    assert main(args) == 2 and not out.exists()  # three sizes and no --image-size: refused
    assert main([*args, "--image-size", "8"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["image_fit"] == {"size": 8, "resize": 8, "resample": "bilinear", "source": "--image-size"}
    assert meta["image_channels"] == 1  # the Net's first convolution takes one channel
    build_user_model(f"{user_setup['nets']}:Net").load_state_dict(load_file(str(out)))


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
