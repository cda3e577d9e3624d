"""Experiment tracking: per-round curves of `unlearn`, per-cell runs of `bench`, and the local stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rem_unlearn.cli import main
from rem_unlearn.tracking import log_record

ROUNDS = 2


def unlearn_logged(setup: dict[str, Path], kind: str, log_dir: Path, capsys) -> dict[str, float]:
    """REM on the user's toy net for two rounds with ``--log kind``; returns the printed before/after rows."""
    out = setup["root"] / "healed.safetensors"
    rc = main(["unlearn", "--model", f"{setup['nets']}:Net", "--model-kwargs", '{"num_classes": 3}',
               "--checkpoint", str(setup["ckpt"]), "--train-data", str(setup["npz"]),
               "--forget-ids", str(setup["forget"]), "--method", "rem", "--device", "cpu",
               "--set", f"epochs={ROUNDS}", "--set", "optim.batch_size=16", "--set", "max_flush_epochs=2",
               "--set", "select_best=false", "--out", str(out), "--log", kind, "--log-dir", str(log_dir)])
    assert rc == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("trained", "rem"):
            rows[parts[0]] = float(parts[1])
    return rows


def test_unlearn_rounds_in_tensorboard(user_setup, capsys) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_dir = user_setup["root"] / "tb"
    printed = unlearn_logged(user_setup, "tensorboard", log_dir, capsys)
    (run,) = [p for p in log_dir.iterdir() if p.is_dir()]
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    for mode in ("drop", "shared"):
        for which in ("forget_accuracy", "retain_accuracy"):
            assert sorted(scalars[f"{which}/{mode}"]) == list(range(ROUNDS + 1))  # start, round 1, round 2
    assert scalars["forget_accuracy/drop"][0] == pytest.approx(printed["trained"], abs=0.01)
    assert scalars["after/forget_accuracy"][ROUNDS] == pytest.approx(printed["rem"], abs=0.01)
    assert scalars["round/lr"] == pytest.approx({1: 0.005, 2: 0.005})
    assert sorted(scalars["proxy/proxy"]) == [0, 1, 2] and scalars["round/steps"][2] > scalars["round/steps"][1]
    assert "params/text_summary" in events.Tags()["tensors"]


def test_unlearn_rounds_in_mlflow(user_setup, capsys) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    db = user_setup["root"] / "store" / "mlflow.db"
    printed = unlearn_logged(user_setup, "mlflow", db, capsys)
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("rem-unlearn").experiment_id])
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "forget_accuracy/shared")}
    assert sorted(history) == list(range(ROUNDS + 1))
    drop = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "forget_accuracy/drop")}
    assert drop[0] == pytest.approx(printed["trained"], abs=0.01)
    assert run.data.params["method"] == "rem" and run.data.params["method_config.optim.lr"] == "0.005"
    assert run.info.status == "FINISHED"


RECORD = {"status": "ok", "key": "abc", "cell": {"method": "rem", "variant": "capacity", "corruption": "poison",
                                                 "discovery_rate": 0.1, "seed": 0, "dataset": "fashion-mnist"},
          "metrics": {"score": 66.5, "healed": 77.0, "utility": 86.4, "attack_success": None},
          "wall_time_s": 8.8, "config": {"experiment": {"model": {"arch": "resnet9", "width": 0.375}},
                                         "method": {"optim": {"lr": 0.005}}},
          "command": "rem-unlearn bench --preset default", "commit": "f" * 40, "versions": {"rem_unlearn": "0.1.0"}}


def test_bench_record_in_mlflow(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    log_record("mlflow", tmp_path / "mlflow.db", RECORD)
    log_record("mlflow", tmp_path / "mlflow.db", {**RECORD, "status": "failed"})  # failures are not runs
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("rem-unlearn").experiment_id])
    assert run.data.metrics == {"score": 66.5, "healed": 77.0, "utility": 86.4, "wall_time_s": 8.8}
    assert run.data.params["config.experiment.model.arch"] == "resnet9"
    assert run.data.params["config.method.optim.lr"] == "0.005"
    assert run.data.params["command"] == RECORD["command"] and run.data.params["commit"] == "f" * 40
    assert json.loads(run.data.params["cell.discovery_rate"]) == 0.1
