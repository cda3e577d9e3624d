"""A table of bad inputs, from the command line and from Python.

Every CLI row must end with exit status 2, exactly one line on stderr (no
traceback), and every file under the test folder unchanged (sha256) with
nothing created.  Every API row must raise a :class:`UserError` whose message
is one line, with the files unchanged.  A row prepares its own bad file, then
the folder is hashed, then the command runs.
"""

from __future__ import annotations

import json
import os
import pickle
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from rem_unlearn.cli import main
from rem_unlearn.errors import UserError

from conftest import make_toy, snapshot, write_fashion_mnist

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")


def user(s: dict, *extra: str, out: str | Path | None = None, **swap: str | Path) -> list[str]:
    """``unlearn`` on the user_setup files; ``swap`` replaces a flag's value (``forget_ids=...``)."""
    flags = {"--model": f"{s['nets']}:Net", "--checkpoint": s["ckpt"], "--train-data": s["npz"],
             "--forget-ids": s["forget"], "--device": "cpu", "--out": out or s["root"] / "fixed.safetensors"}
    for name, value in swap.items():
        flags["--" + name.replace("_", "-")] = value
    argv = ["unlearn"]
    for flag, value in flags.items():
        argv += [flag, str(value)]
    return argv + ["--set", "epochs=1", "--set", "optim.batch_size=16", *extra]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


def npy(path: Path, array) -> Path:
    with open(path, "wb") as f:
        np.save(f, array)
    return path


def npz(s: dict, name: str = "bad.npz", **arrays) -> Path:
    with np.load(s["npz"]) as d:
        base = {k: d[k] for k in d.files}
    base.update(arrays)
    base = {k: v for k, v in base.items() if v is not None}
    np.savez(s["root"] / name, **base)
    return s["root"] / name


def pt(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def image_folder(s: dict, empty: str | None = None, garbage: bool = False) -> Path:
    from PIL import Image

    root = s["root"] / "images"
    for c, cls in enumerate(("a", "b", "c")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        if cls != empty:
            for i in range(3):
                Image.fromarray(np.full((8, 8), 60 * c + i, np.uint8)).save(root / cls / f"{i}.png")
    if garbage:
        write(root / "a" / "broken.png", b"not a png at all")
    return root


def fm(s: dict, **kw) -> Path:
    return write_fashion_mnist(s["root"] / "fm", **kw)


def preset(s: dict, command: str, *args: str) -> list[str]:
    """A preset command with a private cache under the test folder."""
    return [command, f"runtime.cache_dir={s['root'] / 'cache'}", *args]


def locked(s: dict) -> Path:
    """A folder nobody may write in: /sys for root (permissions do not stop root), else a read-only folder."""
    if os.geteuid() == 0:
        return Path("/sys/rem-unlearn-test")
    folder = s["root"] / "locked"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    return folder


def results_with_other_grid(s: dict) -> Path:
    from rem_unlearn.bench import BENCH_FORMAT

    write(s["root"] / "R" / "grid.json", json.dumps({"bench_format": BENCH_FORMAT, "grid": {"methods": ["x"]}}))
    return s["root"] / "R"


def user_sidecar(s: dict) -> Path:
    write(s["root"] / "mine.json", json.dumps({"format": 1, "class": "Net", "model": "nets.py:Net"}))
    return write(s["root"] / "mine.safetensors", s["ckpt"].read_bytes())


# (name, argv builder, expected part of the one error line)
CLI: list[tuple[str, Callable[[dict], list[str]], str]] = [
    # --out: never an input, the right format, a free file in a writable place
    ("out is the training set", lambda s: user(s, out=s["npz"]), "is an input"),
    ("out is the checkpoint", lambda s: user(s, "--force", out=s["ckpt"]), "is an input"),
    ("out is the forget-ids file", lambda s: user(s, "--force", out=write(s["root"] / "f.safetensors", "1000"),
                                                  forget_ids=s["root"] / "f.safetensors"), "is an input"),
    ("out is the model file", lambda s: user(s, "--force", out=s["nets"]), "is an input"),
    ("out ends in .json", lambda s: user(s, out=s["root"] / "fixed.json"), "ending in .safetensors"),
    ("out has no suffix", lambda s: user(s, out=s["root"] / "fixed"), "ending in .safetensors"),
    ("out exists", lambda s: user(s, out=write(s["root"] / "x.safetensors", "other")), "--force"),
    ("out's sidecar exists", lambda s: user(s, out=s["root"] / (write(s["root"] / "x.json", "{}").stem
                                                              + ".safetensors")), "--force"),
    ("out's sidecar is an input", lambda s: user(s, "--force", out=s["root"] / "ids.safetensors",
                                                 forget_ids=write(s["root"] / "ids.json", "1000")), "is an input"),
    ("out is a folder", lambda s: user(s, "--force", out=(s["root"] / "d.safetensors").mkdir() or
                                       s["root"] / "d.safetensors"), "is a folder"),
    ("out lies under a file", lambda s: user(s, out=s["forget"] / "x.safetensors"), "is not a folder"),
    ("out in an unwritable folder", lambda s: user(s, out=locked(s) / "x.safetensors"), "cannot write"),
    ("out links to an input", lambda s: user(s, "--force", out=(s["root"] / "l.safetensors").symlink_to(s["ckpt"])
                                             or s["root"] / "l.safetensors"), "is an input"),
    ("out is a hard link to an input", lambda s: user(s, "--force", out=os.link(s["ckpt"], s["root"] / "h.safetensors")
                                                      or s["root"] / "h.safetensors"), "is an input"),
    ("out is a pipe", lambda s: user(s, "--force", out=os.mkfifo(s["root"] / "p.safetensors")
                                     or s["root"] / "p.safetensors"), "not a regular file"),
    ("out in the model cache", lambda s: preset(s, "unlearn", "--forget-ids", str(s["forget"]), "--out",
                                                str(s["root"] / "cache" / "models" / "k" / "m.safetensors")),
     "inside the model cache"),
    # --forget-ids: a readable file of distinct integer ids of the training set
    ("forget ids missing", lambda s: user(s, forget_ids=s["root"] / "nope.txt"), "not found"),
    ("forget ids is a folder", lambda s: user(s, forget_ids=s["root"]), "not a file"),
    ("forget ids empty", lambda s: user(s, forget_ids=write(s["root"] / "e.txt", "")), "empty"),
    ("forget ids duplicated", lambda s: user(s, forget_ids=write(s["root"] / "d.txt", "1000\n1000\n")),
     "duplicated"),
    ("forget ids unknown", lambda s: user(s, forget_ids=write(s["root"] / "u.txt", "5\n")), "not in the training set"),
    ("forget ids fractional text", lambda s: user(s, forget_ids=write(s["root"] / "f.txt", "1000\n1000.5\n")),
     "not an integer"),
    ("forget ids hex text", lambda s: user(s, forget_ids=write(s["root"] / "h.txt", "1000\n0x10\n")),
     "not an integer"),
    ("forget ids binary", lambda s: user(s, forget_ids=write(s["root"] / "b.txt", b"\xff\xfe\x00\x81")),
     "not a text file"),
    ("forget ids beyond int64", lambda s: user(s, forget_ids=write(s["root"] / "big.txt", "1000\n" + "9" * 30)),
     "64-bit"),
    ("forget npy fractional", lambda s: user(s, forget_ids=npy(s["root"] / "f.npy", np.array([1000.0, 1003.5]))),
     "1003.5"),
    ("forget npy NaN", lambda s: user(s, forget_ids=npy(s["root"] / "n.npy", np.array([1000.0, np.nan]))), "nan"),
    ("forget npy booleans", lambda s: user(s, forget_ids=npy(s["root"] / "b.npy", np.array([True, False]))),
     "booleans"),
    ("forget npy strings", lambda s: user(s, forget_ids=npy(s["root"] / "s.npy", np.array(["1000"]))), "dtype"),
    ("forget npy truncated", lambda s: user(s, forget_ids=write(
        s["root"] / "t.npy", npy(s["root"] / "t.npy", np.arange(1000, 1010)).read_bytes()[:90])),
     "not a readable .npy"),
    ("forget npy is an npz", lambda s: user(s, forget_ids=npz_as_npy(s["root"] / "z.npy")), ".npz archive"),
    ("forget ids cover everything", lambda s: user(s, forget_ids=write(
        s["root"] / "all.txt", "\n".join(str(i) for i in range(1000, 1060)))), "whole training set"),
    # --checkpoint: a readable state_dict that fits the model
    ("checkpoint missing", lambda s: user(s, checkpoint=s["root"] / "nope.safetensors"), "not found"),
    ("checkpoint truncated", lambda s: user(s, checkpoint=write(s["root"] / "t.safetensors",
                                                                s["ckpt"].read_bytes()[:60])), "not a readable"),
    ("checkpoint .pt truncated", lambda s: user(s, checkpoint=write(s["root"] / "t.pt", b"PK\x03\x04" + b"\0" * 20)),
     "not a readable PyTorch checkpoint"),
    ("checkpoint .pt runs code", lambda s: user(s, checkpoint=pt(s["root"] / "evil.pt", {"w": RunsCode()})),
     "refused"),
    ("checkpoint .pt not a state_dict", lambda s: user(s, checkpoint=torch.save([1, 2], s["root"] / "l.pt")
                                                       or s["root"] / "l.pt"), "not a state_dict"),
    ("checkpoint of another shape", lambda s: user(s, "--model-kwargs", '{"num_classes": 7}'), "does not fit"),
    # --model
    ("model without colon", lambda s: user(s, model="nets"), "module:factory"),
    ("model file missing", lambda s: user(s, model=f"{s['root'] / 'no.py'}:Net"), "not found"),
    ("model callable missing", lambda s: user(s, model=f"{s['nets']}:Nope"), "no callable"),
    ("model is not a module", lambda s: user(s, model=f"{s['nets']}:not_a_model"), "not a torch.nn.Module"),
    ("model file has a syntax error", lambda s: user(s, model=f"{write(s['root'] / 'bad.py', 'def (')}:Net"),
     "SyntaxError"),
    ("model kwargs not JSON", lambda s: user(s, "--model-kwargs", "{num_classes: 3}"), "not valid JSON"),
    ("model kwargs not an object", lambda s: user(s, "--model-kwargs", "[3]"), "JSON object"),
    ("model kwargs unknown keyword", lambda s: user(s, "--model-kwargs", '{"classes": 3}'), "unexpected keyword"),
    ("model without checkpoint", lambda s: [a for a in user(s) if a not in ("--checkpoint", str(s["ckpt"]))],
     "missing --checkpoint"),
    # --train-data
    ("train data missing", lambda s: user(s, train_data=s["root"] / "nope.npz"), "not found"),
    ("train data of another format", lambda s: user(s, train_data=write(s["root"] / "d.csv", "1,2")), ".npz file"),
    ("npz without labels", lambda s: user(s, train_data=npz(s, labels=None)), "missing array"),
    ("npz float images", lambda s: user(s, train_data=npz(s, images=np.zeros((60, 8, 8), np.float32))), "uint8"),
    ("npz truncated", lambda s: user(s, train_data=write(s["root"] / "t.npz", s["npz"].read_bytes()[:300])),
     "not a readable .npz"),
    ("npz NaN labels", lambda s: user(s, train_data=npz(s, labels=np.full(60, np.nan))), "labels must be integers"),
    ("npz fractional ids", lambda s: user(s, train_data=npz(s, ids=np.arange(60) + 0.5)), "not a whole number"),
    ("npz duplicated ids", lambda s: user(s, train_data=npz(s, ids=np.zeros(60, int))), "distinct"),
    ("npz label beyond the model's outputs", lambda s: user(s, train_data=npz(s, labels=np.arange(60) % 5)),
     "out of range for a model with 3 outputs"),
    ("npz class names do not match the model", lambda s: user(s, train_data=npz(
        s, class_names=np.array(["a", "b", "c", "d"]))), "4 classes"),
    ("npz mean of the wrong length", lambda s: user(s, train_data=npz(s, mean=[0.1, 0.2], std=[0.2, 0.2])),
     "one per channel"),
    ("image folder with an empty class", lambda s: user(s, train_data=image_folder(s, empty="b")),
     "empty class folder"),
    ("image folder with a broken image", lambda s: user(s, train_data=image_folder(s, garbage=True)),
     "not a readable image"),
    ("mean without std", lambda s: user(s, "--mean", "0.5"), "--std"),
    ("mean not a number", lambda s: user(s, "--mean", "dark", "--std", "0.2"), "numbers"),
    ("mean NaN", lambda s: user(s, "--mean", "nan", "--std", "0.2"), "finite"),
    ("std zero", lambda s: user(s, "--mean", "0.5", "--std", "0"), "positive"),
    # the method and its settings
    ("method unknown", lambda s: user(s, method="remm"), "invalid choice"),
    ("method is an oracle", lambda s: user(s, method="rem-ideal"), "oracle"),
    ("set unknown key", lambda s: user(s, "--set", "gama=0.1"), "valid keys"),
    ("set bad value", lambda s: user(s, "--set", "gamma=2"), "gamma"),
    ("set without value", lambda s: user(s, "--set", "epochs"), "key.sub=value"),
    ("set value of the wrong type", lambda s: user(s, "--set", "optim.batch_size=[1,2]"), "expects int"),
    ("expand unknown layer", lambda s: user(s, "--expand-layers", "nope"), "no layer named"),
    ("expand width negative", lambda s: user(s, "--expand-width", "-1"), "width"),
    ("p_mem above one", lambda s: user(s, "--p-mem", "2"), "p_mem"),
    ("learning rate that diverges", lambda s: user(s, "--set", "optim.lr=1e30", "--set", "select_best=false"),
     "lower the learning rate"),
    pytest.param("device cuda without a GPU", lambda s: user(s, device="cuda"), "no CUDA device", marks=NO_GPU,
                 id="device cuda without a GPU"),
    ("unknown flag", lambda s: user(s, "--nope"), "unrecognized arguments"),
    # configs and data of the presets
    ("config file missing", lambda s: ["train", "--config", str(s["root"] / "nope.toml")], "not found"),
    ("config file not TOML", lambda s: ["train", "--config", str(write(s["root"] / "c.toml", "[train\nx="))],
     "cannot be read"),
    ("config file not a mapping", lambda s: ["train", "--config", str(write(s["root"] / "c.yaml", "- 1\n- 2\n"))],
     "mapping"),
    ("override unknown key", lambda s: preset(s, "train", "train.epoch=3"), "valid keys"),
    ("override bad type", lambda s: preset(s, "train", "train.epochs=many"), "expects int"),
    ("override bad choice", lambda s: preset(s, "train", "corruption.kind=flood"), "choose one of"),
    ("data root missing", lambda s: preset(s, "data", f"data.root={s['root'] / 'nope'}", "--out",
                                           str(s["root"] / "x.png")), "no such folder"),
    ("data root holds only the test split", lambda s: preset(s, "data", f"data.root={fm(s, splits=('test',))}",
                                                             "--out", str(s["root"] / "x.png")), "train files"),
    ("data file truncated", lambda s: preset(s, "data", f"data.root={truncate(fm(s) / 'train-images-idx3-ubyte.gz')}",
                                             "--out", str(s["root"] / "x.png")), "truncated"),
    ("corruption larger than the data", lambda s: preset(s, "data", f"data.root={fm(s)}", "data.train_size=null",
                                                         "corruption.size=5000", "--out", str(s["root"] / "x.png")),
     "larger than the training set"),
    ("data picture of another format", lambda s: preset(s, "data", "--out", str(s["root"] / "x.txt")), ".png"),
    ("data picture exists", lambda s: preset(s, "data", "--out", str(write(s["root"] / "x.png", b"mine"))), "--force"),
    ("data picture in an unwritable folder", lambda s: preset(s, "data", "--out", str(locked(s) / "x.png")),
     "cannot write"),
    ("model cache unwritable", lambda s: ["train", f"runtime.cache_dir={locked(s)}", f"data.root={fm(s)}",
                                          "data.train_size=null", "corruption.size=10"], "cannot write"),
    ("data with no examples", lambda s: preset(s, "data", "--n", "0", "--out", str(s["root"] / "x.png")),
     "--n must be at least 1"),
    ("evaluate a user model's output", lambda s: ["evaluate", "--checkpoint", str(user_sidecar(s))],
     "unlearn --model"),
    ("evaluate a missing checkpoint", lambda s: ["evaluate", "--checkpoint", str(s["root"] / "no.safetensors")],
     "not found"),
    ("evaluate a checkpoint without sidecar", lambda s: ["evaluate", "--checkpoint", str(s["ckpt"])],
     "sidecar"),
    ("evaluate a broken sidecar", lambda s: ["evaluate", "--checkpoint", str(
        write(s["root"] / "net.json", "{broken") and s["ckpt"])], "not a readable checkpoint sidecar"),
    ("evaluate json exists", lambda s: preset(s, "evaluate", "--json", str(write(s["root"] / "m.json", "{}"))),
     "--force"),
    ("evaluate json in an unwritable folder", lambda s: preset(s, "evaluate", "--json", str(locked(s) / "m.json")),
     "cannot write"),
    ("evaluate json of another format", lambda s: preset(s, "evaluate", "--json", str(s["root"] / "m.csv")),
     ".json"),
    ("evaluate json is an input", lambda s: preset(s, "evaluate", "--force", "--forget-ids",
                                                  str(write(s["root"] / "ids.json", "1000")), "--json",
                                                  str(s["root"] / "ids.json")), "is an input"),
    # report and bench
    ("report folder missing", lambda s: ["report", str(s["root"] / "nope")], "not found"),
    ("report folder without records", lambda s: ["report", str((s["root"] / "empty").mkdir() or s["root"] / "empty")],
     "no records"),
    ("report folder is a file", lambda s: ["report", str(s["forget"])], "not a folder"),
    ("bench workers negative", lambda s: ["bench", "--preset", "smoke", "--workers", "-1", "--results",
                                          str(s["root"] / "R")], "--workers"),
    ("bench workers zero", lambda s: ["bench", "--preset", "smoke", "--workers", "0", "--results",
                                      str(s["root"] / "R")], "--workers"),
    ("bench threads zero", lambda s: ["bench", "--preset", "smoke", "--threads", "0", "--results",
                                      str(s["root"] / "R")], "--threads"),
    ("bench results is a file", lambda s: ["bench", "--preset", "smoke", "--results", str(s["forget"])],
     "not a folder"),
    ("bench results in an unwritable folder", lambda s: ["bench", "--preset", "smoke", "--results",
                                                         str(locked(s) / "R")], "cannot write"),
    ("report into an unwritable folder", lambda s: ["report", str(s["root"]), "--out", str(locked(s) / "rep")],
     "cannot write"),
    ("bench unknown grid key", lambda s: ["bench", "--preset", "smoke", "method=[rem]", "--results",
                                          str(s["root"] / "R")], "valid keys"),
    ("bench unknown preset", lambda s: ["bench", "--preset", "huge"], "invalid choice"),
    ("bench folder of another grid", lambda s: ["bench", "--preset", "smoke", "--results",
                                                str(results_with_other_grid(s))], "different grid"),
    ("bench data root missing", lambda s: ["bench", "--preset", "smoke", f"experiment_overrides.data.root="
                                           f"{s['root'] / 'nope'}", "--results", str(s["root"] / "R")],
     "no such folder"),
]


def npz_as_npy(path: Path) -> Path:
    with open(path, "wb") as f:
        np.savez(f, a=[1])
    return path


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return path.parent


def _rows(table):
    return [pytest.param(*row, id=row[0]) if type(row) is tuple else row for row in table]


@pytest.mark.parametrize("name, build, message", _rows(CLI))
def test_cli_bad_input(name, build, message, user_setup, capsys, monkeypatch):
    monkeypatch.chdir(user_setup["root"])  # a default output would land here, and be caught by the snapshot
    argv = build(user_setup)
    before = snapshot(user_setup["root"])
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert snapshot(user_setup["root"]) == before, "a refused command changed or created files"
    assert not (user_setup["root"] / "pwned").exists()


# ----------------------------------------------------------------------------- the Python API


def _unlearn(**kw):
    from rem_unlearn.api import unlearn
    from rem_unlearn.models import ResNet9

    args = {"model": ResNet9(4, 1, width=0.125), "train_set": make_toy(n=64), "forget_ids": [100, 101],
            "method": "rem", "runtime": {"progress": False}, "epochs": 1}
    args.update(kw)
    return lambda s: partial(unlearn, **args)


class Features(torch.nn.Module):
    def forward(self, x):
        return x * 2  # images in, images out: no logits


def _make(**kw):
    from rem_unlearn.data.user import make_dataset

    args = {"images": torch.zeros(4, 1, 6, 6, dtype=torch.uint8), "labels": [0, 1, 0, 1]}
    args.update(kw)
    return lambda s: partial(make_dataset, **args)


def _api(name: str, build: Callable[[dict], Callable[[], object]]):
    """``build(files)`` prepares what the call needs and returns the call."""
    return pytest.param(build, id=name)


def _files_api(s: dict):
    from rem_unlearn.files import check_output

    return partial(check_output, s["npz"], "out", inputs=[s["npz"]], force=True)


def _expand(**kw):
    from rem_unlearn.models import expand

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
    return lambda s: partial(expand, net, **kw)


def _call(module: str, name: str, *args, **kwargs):
    import importlib

    return partial(getattr(importlib.import_module(module), name), *args, **kwargs)


API = [
    _api("ids fractional", _unlearn(forget_ids=[100.5])),
    _api("ids NaN", _unlearn(forget_ids=np.array([100.0, np.nan]))),
    _api("ids strings", _unlearn(forget_ids=["100"])),
    _api("ids booleans", _unlearn(forget_ids=[True, False])),
    _api("ids ragged", _unlearn(forget_ids=[[100], [101, 102]])),
    _api("ids None", _unlearn(forget_ids=None)),
    _api("ids empty", _unlearn(forget_ids=[])),
    _api("ids duplicated", _unlearn(forget_ids=[100, 100])),
    _api("ids unknown", _unlearn(forget_ids=[7])),
    _api("ids beyond int64", _unlearn(forget_ids=np.array([2**64 - 1], dtype=np.uint64))),
    _api("ids cover everything", _unlearn(forget_ids=list(range(100, 164)))),
    _api("method unknown", _unlearn(method="remm")),
    _api("method option unknown", _unlearn(gama=0.1)),
    _api("method option invalid", _unlearn(gamma=2.0)),
    _api("runtime option unknown", _unlearn(runtime={"devise": "cpu"})),
    pytest.param(_unlearn(runtime={"device": "cuda"}), id="runtime cuda without a GPU", marks=NO_GPU),
    _api("model not a classifier", _unlearn(model=Features())),
    _api("labels beyond the model's outputs", _unlearn(train_set=make_toy(n=64, classes=6))),
    _api("oracle method without oracle ids", _unlearn(method="rem-ideal")),
    _api("rem on a model without capacity", _unlearn(model=torch.nn.Sequential(torch.nn.Flatten(),
                                                                                torch.nn.Linear(144, 4)))),
    _api("dataset NaN labels", _make(labels=[0, np.nan, 1, 0])),
    _api("dataset fractional labels", _make(labels=[0, 1.5, 1, 0])),
    _api("dataset negative labels", _make(labels=[0, -1, 1, 0])),
    _api("dataset fewer labels", _make(labels=[0, 1])),
    _api("dataset mean of the wrong length", _make(mean=[0.1, 0.2], std=[0.3, 0.3])),
    _api("dataset std NaN", _make(mean=[0.1], std=[float("nan")])),
    _api("npz truncated", lambda s: _call("rem_unlearn.data.user", "load_npz",
                                          write(s["root"] / "t.npz", s["npz"].read_bytes()[:200]))),
    _api("training set missing", lambda s: _call("rem_unlearn.data.user", "load_training_set", s["root"] / "nope")),
    _api("ids file missing", lambda s: _call("rem_unlearn.ids", "read_ids", s["root"] / "no.txt")),
    _api("weights truncated", lambda s: _call("rem_unlearn.checkpoint", "read_state",
                                              write(s["root"] / "t.safetensors", s["ckpt"].read_bytes()[:50]))),
    _api("weights pickle runs code", lambda s: _call("rem_unlearn.checkpoint", "read_state",
                                                     pt(s["root"] / "e.pt", {"w": RunsCode()}))),
    _api("expand unknown layer", _expand(layers=["nope"])),
    _api("expand width zero", _expand(width=0.0)),
    _api("output is an input", _files_api),
    _api("dataset root missing", lambda s: _call("rem_unlearn.data", "load_dataset", "fashion-mnist", "train",
                                                 root=str(s["root"] / "nope"))),
    _api("bench workers negative", lambda s: _call("rem_unlearn.bench", "run_grid", _call(
        "rem_unlearn.bench", "load_grid", "smoke")(), s["root"] / "R", workers=-1)),
]


@pytest.mark.parametrize("build", API)
def test_api_bad_input(build, user_setup):
    call = build(user_setup)
    before = snapshot(user_setup["root"])
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message
    assert snapshot(user_setup["root"]) == before
    assert not (user_setup["root"] / "pwned").exists()


def test_the_table_is_large_enough():
    assert len(CLI) + len(API) >= 40
    assert len({row[0] if type(row) is tuple else row.id for row in CLI}) == len(CLI)  # distinct rows
