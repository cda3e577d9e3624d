"""Hugging Face image classifiers: save_pretrained folder in, REM through the CLI, save_pretrained folder out.

Tiny models are built from a config with random weights and saved with
``save_pretrained``; nothing downloads.  The results are reloaded with
``transformers`` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import snapshot
from rem_unlearn.cli import main

transformers = pytest.importorskip("transformers")

from rem_unlearn.data.images import ImageFit  # noqa: E402
from rem_unlearn.models.hf import (PROCESSOR_FILE, RECORD_FILE, HFClassifier, HFModelError, Preprocessing,  # noqa: E402
                                   from_pretrained, save_pretrained)

N, SIZE, CLASSES = 60, 12, 3
FORGET = list(range(1000, 1020))  # 20 ids


def vit_model():
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(transformers.ViTConfig(
        image_size=SIZE, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_channels=1, num_labels=CLASSES))


def resnet_model():
    torch.manual_seed(0)
    return transformers.ResNetForImageClassification(transformers.ResNetConfig(
        num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
        num_labels=CLASSES))


ARCHS = {"vit": vit_model, "resnet": resnet_model}


def write_processor(folder: Path, **changes) -> None:
    """A preprocessor_config.json as ViTImageProcessor writes it (written by hand: no processor class needed)."""
    cfg = {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5], "image_std": [0.25],
           "rescale_factor": 1 / 255, "size": {"height": SIZE, "width": SIZE}, "resample": 2,
           "image_processor_type": "ViTImageProcessor"}
    cfg.update(changes)
    (folder / "preprocessor_config.json").write_text(json.dumps(cfg))


@pytest.fixture
def hf_setup(tmp_path: Path) -> dict[str, Path]:
    """Both tiny models saved with save_pretrained (the ViT with an image processor), train.npz, forget.txt."""
    for name, build in ARCHS.items():
        build().save_pretrained(tmp_path / name)
    write_processor(tmp_path / "vit")
    labels = np.arange(N) % CLASSES
    images = (labels[:, None, None] * 80 + np.random.default_rng(0).integers(0, 40, (N, SIZE, SIZE))).astype(np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=labels, ids=np.arange(N) + 1000)
    (tmp_path / "forget.txt").write_text("\n".join(map(str, FORGET)) + "\n")
    return {"root": tmp_path, "npz": tmp_path / "train.npz", "forget": tmp_path / "forget.txt",
            **{name: tmp_path / name for name in ARCHS}}


def run_unlearn(setup: dict[str, Path], model: Path, out: Path, *extra: str) -> int:
    return main(["unlearn", "--hf-model", str(model), "--train-data", str(setup["npz"]),
                 "--forget-ids", str(setup["forget"]), "--method", "rem", "--device", "cpu",
                 "--set", "epochs=1", "--set", "optim.batch_size=16", "--set", "max_flush_epochs=2",
                 "--set", "select_best=false",  # a random-weight model would otherwise be kept as it is
                 "--out", str(out), *extra])


def config_of(model) -> dict:
    cfg = model.config.to_dict()
    cfg.pop("_name_or_path", None)  # where it was loaded from
    return cfg


@pytest.mark.parametrize("arch", list(ARCHS))
def test_cli_rem_on_hf_model_reloads_with_transformers(hf_setup, arch: str, capsys) -> None:
    out = hf_setup["root"] / f"{arch}-unlearned"
    assert run_unlearn(hf_setup, hf_setup[arch], out) == 0
    printed = capsys.readouterr().out
    assert "expand: " in printed and " branch" in printed and "skipped: " in printed and "hf." not in printed
    auto = transformers.AutoModelForImageClassification
    original, result = auto.from_pretrained(hf_setup[arch]), auto.from_pretrained(out)
    assert type(result) is type(original) and config_of(result) == config_of(original)
    before, after = original.state_dict(), result.state_dict()
    assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2  # the unlearned weights, not a copy of the input
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["forget_ids"] == FORGET and record["method"] == "rem"
    assert record["source"] == str(hf_setup[arch])
    report = record["expansion_report"]
    assert any(v.startswith("branch") for v in report.values())
    assert all(not k.startswith("hf.") or v.split(" (")[0] in ("branch", "skipped", "left as is")
               for k, v in report.items() if k != "(widening)")
    if arch == "vit":  # the image processor's normalisation was used, and its config travels with the model
        assert record["mean"] == pytest.approx([0.5]) and record["std"] == pytest.approx([0.25])
        assert (out / "preprocessor_config.json").read_text() == (hf_setup["vit"] / "preprocessor_config.json"
                                                                  ).read_text()
        assert any("layernorm" in k and v.startswith("skipped (LayerNorm") for k, v in report.items())
    else:
        assert any(v.startswith("skipped (BatchNorm2d") for v in report.values())
    assert not list(hf_setup["root"].glob(".*.tmp"))


def test_an_image_folder_of_any_size_is_brought_to_the_processors_input(hf_setup) -> None:
    """Colour photos of three sizes for the 1-channel ViT: made grey and resized to its processor's 12x12."""
    from PIL import Image

    root, rng = hf_setup["root"], np.random.default_rng(0)
    for label, cls in enumerate(("a", "b", "c")):
        (root / "photos" / cls).mkdir(parents=True)
        for i in range(20):
            h, w = [(12, 12), (20, 16), (9, 30)][i % 3]
            Image.fromarray((label * 80 + rng.integers(0, 40, (h, w, 3))).astype(np.uint8)).save(
                root / "photos" / cls / f"{i:02d}.png")
    (root / "forget.txt").write_text("0\n1\n2\n")
    out = root / "folder-unlearned"
    rc = main(["unlearn", "--hf-model", str(hf_setup["vit"]), "--train-data", str(root / "photos"),
               "--forget-ids", str(root / "forget.txt"), "--method", "finetune", "--device", "cpu",
               "--set", "epochs=1", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["image_fit"] == {"size": SIZE, "resize": [SIZE, SIZE], "resample": "bilinear",
                                   "source": str(hf_setup["vit"] / "preprocessor_config.json")}
    assert record["image_channels"] == 1


def test_python_api_round_trip(hf_setup) -> None:
    import rem_unlearn as ru
    from rem_unlearn.data.user import load_npz

    model = ru.from_pretrained(hf_setup["vit"])
    assert isinstance(model, HFClassifier) and model.preprocessing.mean == pytest.approx((0.5,))
    train = load_npz(hf_setup["npz"])
    x = torch.randn(2, 1, SIZE, SIZE)
    big = ru.expand(model, example_input=x, num_classes=CLASSES)
    result = ru.unlearn(big, train, FORGET, "rem", epochs=1, select_best=False, runtime={"device": "cpu"})
    out = save_pretrained(result.model, hf_setup["root"] / "api-out", {"note": "api"})
    reloaded = transformers.AutoModelForImageClassification.from_pretrained(out)
    with torch.no_grad():  # the saved model is the unlearned one in drop mode (capacity off)
        assert torch.allclose(reloaded(pixel_values=x).logits, result.model.eval()(x), atol=1e-5)
    assert json.loads((out / RECORD_FILE).read_text())["note"] == "api"


def test_preprocessing_is_converted_to_package_units(tmp_path: Path) -> None:
    write_processor(tmp_path, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.25])
    pre = Preprocessing.read(tmp_path)
    assert pre.mean == pytest.approx((0.5, 0.4, 0.3)) and pre.size == (SIZE, SIZE)
    # Without rescaling, the processor normalises raw 0..255 values: mean 127.5 is 0.5 in pixel / 255 units.
    write_processor(tmp_path, do_rescale=False, image_mean=[127.5], image_std=[51.0])
    pre = Preprocessing.read(tmp_path)
    assert pre.mean == pytest.approx((0.5,)) and pre.std == pytest.approx((0.2,))
    write_processor(tmp_path, do_normalize=False, do_resize=False)
    assert Preprocessing.read(tmp_path).mean == (0.0,) and Preprocessing.read(tmp_path).size is None
    write_processor(tmp_path, size={"shortest_edge": 224}, do_center_crop=True, crop_size={"height": 200,
                                                                                          "width": 200})
    assert Preprocessing.read(tmp_path).fit == ImageFit(200, 224, "bilinear", str(tmp_path / PROCESSOR_FILE))
    write_processor(tmp_path, size={"shortest_edge": 224}, crop_pct=0.875, resample=3)  # ConvNeXt's rule
    assert Preprocessing.read(tmp_path).fit == ImageFit(224, 256, "bicubic", str(tmp_path / PROCESSOR_FILE))
    write_processor(tmp_path, size={"height": 32, "width": 24})
    with pytest.raises(HFModelError, match="makes 32x24 inputs; rem-unlearn trains on square images only"):
        Preprocessing.read(tmp_path)
    assert Preprocessing.read(tmp_path / "nowhere") == Preprocessing()


def _bad(setup: dict[str, Path], what: str) -> tuple[list[str], str]:
    """Arguments of a refused run, and the message it must print."""
    root = setup["root"]
    out = str(root / "never")
    if what == "channels":  # grey and colour images can be made for a 1- or 3-channel model, not for others
        transformers.ResNetForImageClassification(transformers.ResNetConfig(
            num_channels=2, embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=CLASSES)
        ).save_pretrained(root / "two-channel")
        return ["--hf-model", str(root / "two-channel"), "--out", out], "only 1 (grey) or 3 (RGB) can be made"
    if what == "size":  # the processor brings the images to 32x32, which this ViT's position embeddings refuse
        write_processor(setup["vit"], size={"height": 32, "width": 32})
        return ["--hf-model", str(setup["vit"]), "--out", out], "fails on 1x32x32 images (config.json image_size"
    if what == "weights":
        cfg = json.loads((setup["vit"] / "config.json").read_text())
        cfg["hidden_size"] = 32
        (setup["vit"] / "config.json").write_text(json.dumps(cfg))
        return ["--hf-model", str(setup["vit"]), "--out", out], "weights do not fit its config.json"
    if what == "no config":
        (setup["vit"] / "config.json").unlink()
        return ["--hf-model", str(setup["vit"]), "--out", out], "no config.json"
    if what == "out is the input":
        return ["--hf-model", str(setup["vit"]), "--out", str(setup["vit"]), "--force"], "is, holds or lies inside"
    if what == "out inside the input":
        return ["--hf-model", str(setup["vit"]), "--out", str(setup["vit"] / "sub")], "is, holds or lies inside"
    if what == "out exists":
        (root / "taken").mkdir()
        return ["--hf-model", str(setup["vit"]), "--out", str(root / "taken")], "already exists; use --force"
    if what == "force on a foreign folder":
        (root / "mine").mkdir()
        (root / "mine" / "notes.txt").write_text("keep me")
        return (["--hf-model", str(setup["vit"]), "--out", str(root / "mine"), "--force"],
                "was not written by rem-unlearn")
    if what == "with a checkpoint":
        return ["--hf-model", str(setup["vit"]), "--checkpoint", str(setup["npz"]), "--out", out], "drop --checkpoint"
    raise AssertionError(what)


BAD = ("channels", "size", "weights", "no config", "out is the input", "out inside the input", "out exists",
       "force on a foreign folder", "with a checkpoint")


@pytest.mark.parametrize("what", BAD)
def test_bad_hf_inputs_are_one_line_and_write_nothing(hf_setup, capsys, what: str) -> None:
    args, message = _bad(hf_setup, what)
    capsys.readouterr()  # what building the inputs printed
    before = snapshot(hf_setup["root"])
    rc = main(["unlearn", "--train-data", str(hf_setup["npz"]), "--forget-ids", str(hf_setup["forget"]),
               "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(hf_setup["root"]) == before
    assert not (hf_setup["root"] / "never").exists()


def test_force_replaces_an_earlier_output_whole(hf_setup) -> None:
    out = hf_setup["root"] / "out"
    assert run_unlearn(hf_setup, hf_setup["resnet"], out) == 0
    (out / "stale.txt").write_text("from the first run")
    assert run_unlearn(hf_setup, hf_setup["resnet"], out, "--force", "--seed", "1") == 0
    assert not (out / "stale.txt").exists() and (out / RECORD_FILE).is_file()
    assert sorted(p.name for p in hf_setup["root"].iterdir() if p.name.startswith(".")) == []


def test_checks_before_loading(hf_setup) -> None:
    with pytest.raises(HFModelError, match="not a folder"):
        from_pretrained(hf_setup["npz"])
