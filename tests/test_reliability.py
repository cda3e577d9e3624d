"""Issue 11, one test per failure: a user's files are sacred, every mistake is one line, nothing silent.

Each test drives the command (``main``) or the API as a user would, and checks
the exit status, the single error line, and the files (sha256 before/after).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import rem_unlearn
from rem_unlearn.cli import main

from conftest import snapshot, write_fashion_mnist

SRC = Path(rem_unlearn.__file__).resolve().parents[1]  # the package under test, for subprocesses


def user_argv(s: dict, out: Path | str, *extra: str) -> list[str]:
    """``unlearn`` on the user_setup files (3-class Net, 60 images, 3 forget ids), quick settings."""
    return ["unlearn", "--model", f"{s['nets']}:Net", "--checkpoint", str(s["ckpt"]), "--train-data", str(s["npz"]),
            "--forget-ids", str(s["forget"]), "--device", "cpu", "--set", "epochs=1", "--set", "optim.batch_size=16",
            "--set", "max_flush_epochs=2", "--out", str(out), *extra]


def refused(argv: list[str], capsys, root: Path, message: str, status: int = 2) -> str:
    """Run the command; it must fail with ``status``, one stderr line containing ``message``, and change no file."""
    before = snapshot(root)
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == status, err
    assert snapshot(root) == before, err
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- 1. an input destroyed


def test_out_equal_to_train_data_is_refused(user_setup, capsys):
    refused(user_argv(user_setup, user_setup["npz"]), capsys, user_setup["root"], "train.npz")


def test_out_equal_to_checkpoint_is_refused_even_with_force(user_setup, capsys):
    line = refused(user_argv(user_setup, user_setup["ckpt"]), capsys, user_setup["root"], "is an input")
    assert "net.safetensors" in line
    refused(user_argv(user_setup, user_setup["ckpt"], "--force"), capsys, user_setup["root"], "is an input")


def test_out_through_a_link_to_an_input_is_refused(user_setup, capsys):
    link = user_setup["root"] / "alias.safetensors"
    link.symlink_to(user_setup["ckpt"])
    refused(user_argv(user_setup, link), capsys, user_setup["root"], "is an input")
    hard = user_setup["root"] / "hard.safetensors"
    os.link(user_setup["ckpt"], hard)
    refused(user_argv(user_setup, hard), capsys, user_setup["root"], "is an input")


def test_out_with_json_suffix_is_refused(user_setup, capsys):
    refused(user_argv(user_setup, user_setup["root"] / "fixed.json"), capsys, user_setup["root"], ".safetensors")


def test_existing_out_and_sidecar_need_force(user_setup, capsys):
    root = user_setup["root"]
    (root / "fixed.safetensors").write_bytes(b"someone else's file")
    refused(user_argv(user_setup, root / "fixed.safetensors"), capsys, root, "--force")
    (root / "fixed.safetensors").unlink()
    (root / "fixed.json").write_text('{"mine": true}')  # only the sidecar name is taken
    refused(user_argv(user_setup, root / "fixed.safetensors"), capsys, root, "--force")
    rc = main(user_argv(user_setup, root / "fixed.safetensors", "--force", "--set", "select_best=false"))
    assert rc == 0 and json.loads((root / "fixed.json").read_text())["method"] == "rem"


def test_sidecar_of_out_may_not_be_an_input(user_setup, capsys):
    root = user_setup["root"]
    ids = root / "fixed.json"  # a forget-ids file whose name is the sidecar of --out
    ids.write_text("1000\n")
    argv = user_argv(user_setup, root / "fixed.safetensors", "--set", "select_best=false")
    argv[argv.index("--forget-ids") + 1] = str(ids)
    refused(argv, capsys, root, "is an input")


# ----------------------------------------------------------------------------- 2. output checked after the work


@pytest.fixture
def no_unlearning(monkeypatch):
    """Fail the test if the command starts unlearning: the output must be refused before any work."""
    import rem_unlearn.api

    def boom(*a, **k):
        raise AssertionError("unlearning started although the output is unusable")

    monkeypatch.setattr(rem_unlearn.api, "unlearn_working", boom)  # where unlearn and unlearn_user_model start


def test_unwritable_out_folder_is_refused_before_work(user_setup, capsys, no_unlearning):
    if os.geteuid() == 0:  # root writes through permissions; /sys refuses even root
        folder = Path("/sys")
        if not folder.is_dir():
            pytest.skip("no /sys")
    else:
        folder = user_setup["root"] / "locked"
        folder.mkdir()
        folder.chmod(0o555)
    refused(user_argv(user_setup, folder / "fixed.safetensors"), capsys, user_setup["root"], "cannot write")


def test_out_under_a_file_is_refused_before_work(user_setup, capsys, no_unlearning):
    refused(user_argv(user_setup, user_setup["forget"] / "fixed.safetensors"), capsys, user_setup["root"],
            "is not a folder")


def test_out_that_is_a_folder_is_refused_before_work(user_setup, capsys, no_unlearning):
    folder = user_setup["root"] / "fixed.safetensors"
    folder.mkdir()
    refused(user_argv(user_setup, folder), capsys, user_setup["root"], "is a folder")
    assert list(user_setup["root"].rglob("*.tmp")) == []


def test_bench_bad_workers_writes_nothing(tmp_path, capsys):
    results = tmp_path / "R"
    refused(["bench", "--preset", "smoke", "--workers", "-1", "--results", str(results)], capsys, tmp_path,
            "workers must be >= 1")
    assert not results.exists()


# ----------------------------------------------------------------------------- 3. silent coercion


def test_fractional_ids_in_npy_forget_file_are_refused(user_setup, capsys):
    ids = user_setup["root"] / "forget.npy"
    np.save(ids, np.array([1000.0, 1003.7]))
    argv = user_argv(user_setup, user_setup["root"] / "fixed.safetensors")
    argv[argv.index("--forget-ids") + 1] = str(ids)
    refused(argv, capsys, user_setup["root"], "1003.7")


def test_fractional_ids_in_npz_are_refused(user_setup, capsys):
    n = 60
    with np.load(user_setup["npz"]) as d:
        np.savez(user_setup["npz"], images=d["images"], labels=d["labels"], ids=np.arange(n) + 1000.5)
    refused(user_argv(user_setup, user_setup["root"] / "fixed.safetensors"), capsys, user_setup["root"],
            "not a whole number")


def test_api_and_cli_refuse_the_same_ids(user_setup, toy):
    from rem_unlearn.api import ForgetIdError, forget_rows
    from rem_unlearn.ids import read_ids

    path = user_setup["root"] / "ids.npy"
    for bad in (np.array([100.5]), np.array([np.nan]), np.array([True])):
        np.save(path, bad)
        with pytest.raises(ForgetIdError):
            read_ids(path)
        with pytest.raises(ForgetIdError):
            forget_rows(toy, bad)
    np.save(path, np.array([100.0, 101.0]))  # whole numbers stored as floats are fine in both
    assert read_ids(path).tolist() == toy.ids[forget_rows(toy, np.array([100.0, 101.0]))].tolist() == [100, 101]


# ----------------------------------------------------------------------------- 4. tracebacks instead of a line


def test_truncated_pt_checkpoint_is_one_line(user_setup, capsys):
    from safetensors.torch import load_file

    pt = user_setup["root"] / "net.pt"
    torch.save(load_file(str(user_setup["ckpt"])), pt)
    pt.write_bytes(pt.read_bytes()[:200])
    argv = user_argv(user_setup, user_setup["root"] / "fixed.safetensors")
    argv[argv.index("--checkpoint") + 1] = str(pt)
    refused(argv, capsys, user_setup["root"], "not a readable PyTorch checkpoint")


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pt_whose_pickle_runs_code_is_refused_in_one_line(user_setup, capsys):
    root = user_setup["root"]
    marker = root / "pwned"
    evil = root / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"conv.weight": _RunsCode(str(marker))}, f)
    argv = user_argv(user_setup, root / "fixed.safetensors")
    argv[argv.index("--checkpoint") + 1] = str(evil)
    refused(argv, capsys, root, "refused")
    assert not marker.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_gpu_is_one_line(user_setup, capsys):
    argv = user_argv(user_setup, user_setup["root"] / "fixed.safetensors")
    argv[argv.index("--device") + 1] = "cuda"
    refused(argv, capsys, user_setup["root"], "no CUDA device")


def test_diverging_run_is_one_line_and_writes_nothing(user_setup, capsys):
    refused(user_argv(user_setup, user_setup["root"] / "fixed.safetensors", "--set", "optim.lr=1e30",
                      "--set", "select_best=false"), capsys, user_setup["root"], "lower the learning rate")


def test_evaluate_on_a_user_model_output_explains(user_setup, capsys):
    root = user_setup["root"]
    assert main(user_argv(user_setup, root / "fixed.safetensors", "--set", "select_best=false")) == 0
    refused(["evaluate", "--checkpoint", str(root / "fixed.safetensors")], capsys, root, "unlearn --model")


def test_closed_stdout_pipe_is_quiet():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "rem_unlearn.cli", "methods"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # like `| head` that has already exited
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


# ----------------------------------------------------------------------------- 5. silent no-ops and fallbacks


def test_no_improving_round_says_so_and_writes_nothing(user_setup, capsys):
    root = user_setup["root"]
    line = refused(user_argv(user_setup, root / "fixed.safetensors", "--set", "optim.lr=100"), capsys, root,
                   "no round of rem improved on the original model", status=3)
    assert "nothing was written" in line


def test_unlearn_result_tells_whether_selection_kept_the_start(toy):
    from rem_unlearn.api import unlearn
    from rem_unlearn.models import ResNet9

    torch.manual_seed(0)
    model = ResNet9(4, 1, width=0.125)
    result = unlearn(model, toy, toy.ids[:8], "ga", epochs=1, runtime={"progress": False})
    assert result.selected is not None and result.improved == (result.selected != "start")
    if not result.improved:  # the start comes back unchanged
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in result.model.state_dict().items())
    none = unlearn(model, toy, toy.ids[:8], "none", runtime={"progress": False})
    assert none.selected is None and none.improved is None


def test_missing_data_root_is_an_error(tmp_path, capsys):
    refused(["data", f"data.root={tmp_path / 'nowhere'}", "--out", str(tmp_path / "x.png")], capsys, tmp_path,
            "no such folder")


def test_data_root_with_only_test_files_is_an_error(tmp_path, capsys):
    root = write_fashion_mnist(tmp_path / "fm", splits=("test",))
    line = refused(["data", f"data.root={root}", "--out", str(tmp_path / "x.png")], capsys, tmp_path,
                   "train files")
    assert str(root) in line


def test_model_cache_key_covers_the_data_read(tmp_path):
    from rem_unlearn.config import load_config, ExperimentConfig
    from rem_unlearn.experiment import prepare

    def task(root: Path):
        cfg = load_config(ExperimentConfig, overrides=[
            f"data.root={root}", "corruption.kind=random", "corruption.size=10", "model.width=0.125",
            "train.epochs=1", "train.optim.batch_size=64", f"runtime.cache_dir={tmp_path / 'cache'}",
            "runtime.progress=false"])
        return prepare(cfg)

    a = task(write_fashion_mnist(tmp_path / "a", seed=0))
    b = task(write_fashion_mnist(tmp_path / "b", seed=1))  # same config, other images
    same = task(write_fashion_mnist(tmp_path / "c", seed=0))  # another root with the images of a
    assert a.checkpoint != b.checkpoint
    assert same.checkpoint == a.checkpoint


def test_empty_class_folder_is_refused(user_setup, capsys):
    from PIL import Image

    root = user_setup["root"] / "images"
    for cls in ("cat", "dog", "emu"):
        (root / cls).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(root / "cat" / f"{i}.png")
        Image.fromarray(np.full((8, 8), 200 - 10 * i, np.uint8)).save(root / "emu" / f"{i}.png")
    (user_setup["root"] / "ids.txt").write_text("0\n1\n")
    argv = user_argv(user_setup, user_setup["root"] / "fixed.safetensors", "--set", "select_best=false")
    argv[argv.index("--train-data") + 1] = str(root)
    argv[argv.index("--forget-ids") + 1] = str(user_setup["root"] / "ids.txt")
    refused(argv, capsys, user_setup["root"], "dog: an empty class folder")


def test_num_classes_comes_from_the_model(user_setup, capsys):
    """A 4-class model on data that holds only classes 0..2 is fine; labels beyond the outputs are not."""
    root = user_setup["root"]
    argv = user_argv(user_setup, root / "fixed.safetensors", "--set", "select_best=false")
    from safetensors.torch import save_file
    from rem_unlearn.models.factory import build_user_model

    net = build_user_model(f"{user_setup['nets']}:Net", {"num_classes": 4})
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(user_setup["ckpt"]))
    assert main(argv + ["--model-kwargs", '{"num_classes": 4}']) == 0
    assert json.loads((root / "fixed.json").read_text())["num_classes"] == 4
    capsys.readouterr()
    with np.load(user_setup["npz"]) as d:
        labels = d["labels"].copy()
        labels[5] = 4
        np.savez(user_setup["npz"], images=d["images"], labels=labels, ids=d["ids"])
    refused(argv + ["--model-kwargs", '{"num_classes": 4}', "--force"], capsys, root, "label 4 is out of range")


# ----------------------------------------------------------------------------- 6. concurrency


def test_concurrent_saves_of_one_checkpoint_never_collide(tmp_path):
    from rem_unlearn.checkpoint import load_weights, save_checkpoint
    from rem_unlearn.models import ResNet9

    model = ResNet9(4, 1, width=0.125)
    path = tmp_path / "model.safetensors"
    errors: list[BaseException] = []

    def save_many():
        try:
            for _ in range(15):
                save_checkpoint(model, path, {"note": "x"})
        except BaseException as exc:  # collected: the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=save_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    load_weights(ResNet9(4, 1, width=0.125), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]  # no temp file left


def test_outputs_get_the_usual_permissions(tmp_path):
    from rem_unlearn.files import atomic_write_text

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        (tmp_path / "shared.txt").write_text("old")
        (tmp_path / "shared.txt").chmod(0o664)
        atomic_write_text(tmp_path / "shared.txt", "new")
        assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o664  # a replaced file keeps its mode
    finally:
        os.umask(umask)
