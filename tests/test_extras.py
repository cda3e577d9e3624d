"""Optional extras: the default install never needs one, and a missing one is one line naming it."""

from __future__ import annotations

import sys

import pytest

from conftest import snapshot
from rem_unlearn.cli import main

MISSING = {  # the option, the modules hidden, the extra the error must name
    "hf": (["--hf-model", "{root}"], ("transformers",), "hf"),
    "tensorboard": (["--model", "{nets}:Net", "--checkpoint", "{ckpt}", "--log", "tensorboard"],
                    ("tensorboard", "torch.utils.tensorboard"), "tensorboard"),
    "mlflow": (["--model", "{nets}:Net", "--checkpoint", "{ckpt}", "--log", "mlflow"], ("mlflow",), "mlflow"),
    "datasets": (["--model", "{nets}:Net", "--checkpoint", "{ckpt}", "--train-data", "{root}/saved"], ("datasets",),
                 "datasets"),
}


@pytest.mark.parametrize("extra", list(MISSING))
def test_missing_extra_is_one_line_and_writes_nothing(user_setup, capsys, monkeypatch, extra: str) -> None:
    args, modules, name = MISSING[extra]
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    root = user_setup["root"]
    (root / "config.json").write_text("{}")  # enough of a save_pretrained folder to reach the import
    (root / "saved").mkdir()
    (root / "saved" / "state.json").write_text("{}")  # and of a save_to_disk folder
    before = snapshot(root)
    args = [a.format(root=root, nets=user_setup["nets"], ckpt=user_setup["ckpt"]) for a in args]
    out = root / ("never" if extra == "hf" else "never.safetensors")
    rc = main(["unlearn", "--train-data", str(user_setup["npz"]), "--forget-ids", str(user_setup["forget"]),
               "--device", "cpu", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and f"pip install 'rem-unlearn[{name}]'" in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(root) == before and not out.exists()


def test_default_install_imports_no_extra() -> None:
    """The package and its command load without the optional packages (checked in a clean interpreter)."""
    import subprocess

    code = ("import sys\n"
            "for m in ('transformers', 'tensorboard', 'mlflow', 'datasets', 'submitit', 'ray'): sys.modules[m] = None\n"
            "import rem_unlearn, rem_unlearn.cli, rem_unlearn.tracking, rem_unlearn.models.hf, rem_unlearn.bench\n"
            "import rem_unlearn.data.hf_dataset, rem_unlearn.bench.engines\n"
            "rem_unlearn.cli.build_parser()\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
