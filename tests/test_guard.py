"""The utility guard: a result that lost more retain accuracy than allowed is never handed back.

A small user model is trained until it fits its data, then fine-tuning at a
far too high learning rate (kept with ``select_best=false``) wrecks it: the CLI must
write nothing and exit 3 with one line, ``--max-utility-drop`` must accept the
drop, and the API must raise a typed error that carries the result.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from rem_unlearn import UtilityDropError, unlearn, unlearn_user_model
from rem_unlearn.cli import main
from rem_unlearn.data.user import load_training_set
from rem_unlearn.models.factory import build_user_model

from conftest import snapshot

# Fine-tuning at lr 5 without model selection: the last epoch is returned, whatever it did.
WRECK = ["--method", "finetune", "--set", "optim.lr=5", "--set", "select_best=false", "--set", "epochs=1"]
WRECK_API = {"optim": {"lr": 5.0}, "select_best": False, "epochs": 1}


@pytest.fixture
def trained(user_setup):
    """user_setup with a Net trained to fit its 60 images (retain accuracy 100 %)."""
    train = load_training_set(user_setup["npz"])
    net = build_user_model(f"{user_setup['nets']}:Net")
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x = (train.images.float() / 255 - torch.tensor(train.mean).view(1, -1, 1, 1)) / torch.tensor(train.std).view(
        1, -1, 1, 1)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), train.labels).backward()
        opt.step()
    assert float((net(x).argmax(1) == train.labels).float().mean()) == 1.0
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(user_setup["ckpt"]))
    return {**user_setup, "net": net, "train": train}


def argv(s, out, *extra):
    return ["unlearn", "--model", f"{s['nets']}:Net", "--checkpoint", str(s["ckpt"]), "--train-data", str(s["npz"]),
            "--forget-ids", str(s["forget"]), "--device", "cpu", "--set", "optim.batch_size=16", "--out", str(out),
            *extra]


def test_collapsing_run_writes_nothing_and_exits_3(trained, capsys):
    root = trained["root"]
    before = snapshot(root)
    assert main(argv(trained, root / "fixed.safetensors", *WRECK)) == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert snapshot(root) == before
    assert len(err) == 1 and "lowered the retain accuracy from 100.00 %" in err[0], err
    assert "nothing was written" in err[0] and "--max-utility-drop" in err[0] and "Traceback" not in err[0]


def test_max_utility_drop_accepts_the_drop(trained, capsys):
    out = trained["root"] / "fixed.safetensors"
    assert main(argv(trained, out, *WRECK, "--max-utility-drop", "none")) == 0
    assert out.is_file()
    out.unlink()
    out.with_suffix(".json").unlink()
    assert main(argv(trained, out, *WRECK, "--max-utility-drop", "100")) == 0
    assert out.is_file()


def test_healthy_run_passes_the_guard(trained):
    repaired = unlearn_user_model(trained["net"], trained["train"], [1000, 1003, 1006], "ga", epochs=1,
                                  runtime={"progress": False})
    assert repaired.result.utility_drop is not None and repaired.result.utility_drop <= 5.0


def test_api_raises_a_typed_error_carrying_the_result(trained):
    net, train = trained["net"], trained["train"]
    with pytest.raises(UtilityDropError) as caught:
        unlearn_user_model(net, train, [1000, 1003, 1006], "finetune", runtime={"progress": False},
                           **WRECK_API)
    err = caught.value
    assert err.before == 100.0 and err.drop > 5.0 and err.limit == 5.0
    assert err.result.model is not None and err.result.result.retain_after == err.after  # the UserModelResult
    accepted = unlearn_user_model(net, train, [1000, 1003, 1006], "finetune", runtime={"progress": False},
                                  max_utility_drop=None, **WRECK_API)
    assert accepted.result.retain_after == err.after  # the same run, handed back on request
    with pytest.raises(UtilityDropError) as plain:  # unlearn() guards too, and carries its UnlearnResult
        unlearn(net, train, [1000, 1003, 1006], "finetune", runtime={"progress": False},
                           **WRECK_API)
    assert plain.value.result.utility_drop == plain.value.drop


def test_bad_max_utility_drop_is_one_line(trained, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv(trained, trained["root"] / "fixed.safetensors", "--max-utility-drop", "-3"))
    assert caught.value.code == 2
    assert "not a number of points" in capsys.readouterr().err
