"""Sweeps past one machine: SLURM job arrays through submitit (its local executor here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rem_unlearn.bench import engines
from rem_unlearn.bench.engines import SubmititEngine
from rem_unlearn.bench.grid import expand, grid_preset
from rem_unlearn.config import load_config
from rem_unlearn.bench.grid import GridConfig

submitit = pytest.importorskip("submitit")

GRID = ["corruptions=[random]", "discovery_rates=[0.5,1.0]", "methods=[none,ga,finetune]"]  # 6 cells, 1 model


def bench(results: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rem_unlearn.cli", "bench", "--preset", "smoke", "--results", str(results),
            "--engine", "submitit", "--cluster", "local", "--workers", "1", "--threads", "1", *extra, *GRID,
            f"experiment_overrides.runtime.cache_dir={cache}"]


def records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "records").glob("*.json"))}


def test_a_local_submitit_sweep_resumes_after_a_kill(tmp_path: Path) -> None:
    results, cache = tmp_path / "results", tmp_path / "cache"
    env = {**os.environ, "REM_UNLEARN_QUIET": "1"}
    first = subprocess.Popen(bench(results, cache), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)  # its own group: the kill takes its jobs too
    deadline = time.monotonic() + 300
    while len(records(results)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = records(results)
    assert 2 <= len(before) < 6, first.stdout.read()
    done = subprocess.run(bench(results, cache), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    after = records(results)
    assert len(after) == 6 and all(r["status"] == "ok" for r in after.values())
    assert all(after[k]["started"] == r["started"] for k, r in before.items())  # finished cells were not redone
    assert len({r["pid"] for r in after.values()} - {os.getpid()}) == 6  # every cell ran in a job of its own
    assert list((results / "submitit").glob("*_log.out"))  # submitit's job logs, next to the records


class FakeExecutor:
    """Stands in for SLURM: records what was submitted; each task runs when its result is asked for."""

    made: list["FakeExecutor"] = []

    def __init__(self, folder, cluster):
        self.cluster, self.parameters, self.arrays = cluster, {}, []
        FakeExecutor.made.append(self)

    def update_parameters(self, **kwargs):
        self.parameters.update(kwargs)

    def map_array(self, fn, *iterables):
        jobs = [FakeJob(fn, args) for args in zip(*iterables)]
        self.arrays.append(jobs)
        return jobs


class FakeJob:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def done(self) -> bool:
        return True

    def result(self):
        if self.args[0].method == "ga":
            raise RuntimeError("node lost")  # the job died outside the cell
        return self.fn(*self.args)


def test_slurm_sweeps_are_one_job_array(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    ran = []
    monkeypatch.setattr(engines, "_worker_cell", lambda cell, threads: ran.append((cell.method, threads)) or
                        {"cell": cell.method})
    data = grid_preset("smoke")
    data.update(corruptions=["random"], discovery_rates=[1.0], methods=["none", "ga", "rem"])
    cells = expand(load_config(GridConfig, base=data))
    engine = SubmititEngine(tmp_path, "slurm", workers=2, slurm={"partition": "gpu", "slurm_time": 30})
    out = list(engine.run(iter(cells)))
    made = FakeExecutor.made[-1]
    assert made.cluster == "slurm" and len(made.arrays) == 1 and len(made.arrays[0]) == 3  # one array, every cell
    assert made.parameters["slurm_array_parallelism"] == 2 and made.parameters["slurm_partition"] == "gpu"
    assert made.parameters["slurm_time"] == 30 and made.parameters["cpus_per_task"] == 1
    assert sorted(ran) == [("none", 1), ("rem", 1)]
    failed = [r for r in out if r.get("status") == "failed"]
    assert len(out) == 3 and len(failed) == 1 and "submitit job failed" in failed[0]["error"]
    assert "node lost" in failed[0]["error"]


def test_bad_submitit_flags_are_one_line(tmp_path: Path, capsys) -> None:
    from rem_unlearn.cli import main

    assert main(["bench", "--preset", "smoke", "--results", str(tmp_path / "r"), "--engine", "submitit",
                 "--slurm", "partition"]) == 2
    assert "--slurm 'partition': expected KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


CLUSTER = """
import sys
from ray.cluster_utils import Cluster
homes = sys.argv[1:]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                        "env_vars": {"HOME": homes[0]}})
cluster.add_node(num_cpus=1, env_vars={"HOME": homes[1]})
print(cluster.address, flush=True)
sys.stdin.read()  # until the test closes it
cluster.shutdown()
"""


@pytest.fixture
def two_ray_nodes(tmp_path: Path):
    """Two Ray nodes (two raylets) on loopback, each with its own HOME, so its own ~/.cache: no shared disk.

    Ray's own multi-node test cluster stands in for two `ray start` processes: on Linux, Ray 2.60 stays on
    127.0.0.1 only with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and then `ray start --address` refuses a second node.
    """
    pytest.importorskip("ray")
    homes = [tmp_path / "node-a", tmp_path / "node-b"]
    for home in homes:
        home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no address left by another test
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every Ray process binds to 127.0.0.1
    log = tmp_path / "cluster.log"
    with open(log, "w") as err:
        cluster = subprocess.Popen([sys.executable, "-c", CLUSTER, *map(str, homes)], env=env, text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), log.read_text()[-3000:]
        yield address, homes, env
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(timeout=120)
        except subprocess.TimeoutExpired:
            cluster.kill()


@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_ray_nodes_without_a_shared_disk_get_the_models_and_data_from_the_driver(two_ray_nodes, tmp_path) -> None:
    from conftest import write_fashion_mnist

    address, homes, env = two_ray_nodes
    data = write_fashion_mnist(tmp_path / "fashion-mnist", n_train=700, n_test=100)
    driver_home = tmp_path / "driver"
    driver_home.mkdir()
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "rem_unlearn.cli", "bench", "--preset", "smoke", "--results", str(results),
         "--engine", "ray", "--ray-address", address, "--threads", "1", "--quiet", *GRID,
         f"experiment_overrides.data.root={data}"],
        env={**env, "HOME": str(driver_home)}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    got = records(results)
    assert len(got) == 6 and all(r["status"] == "ok" for r in got.values())
    driver_models = list((driver_home / ".cache/rem_unlearn/models").glob("*/model.safetensors"))
    assert len(driver_models) == 1  # trained once, by the driver
    key = driver_models[0].parent.name
    ran_on = [home for home in homes if (home / ".cache/rem_unlearn/models" / key).exists()]
    assert len(ran_on) == 2  # both nodes ran cells, each from its own cache folder
    for home in ran_on:
        copy = home / ".cache/rem_unlearn/models" / key / "model.safetensors"
        assert copy.read_bytes() == driver_models[0].read_bytes()
    sources = [r["model_source"] for r in got.values()]
    assert sources.count("received") == 2 and sources.count("node cache") == 4  # written once per node
