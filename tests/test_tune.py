"""Equal, test-free tuning (rem-unlearn tune) and grids that run the tuned settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rem_unlearn.bench import tune as tuning
from rem_unlearn.bench.grid import expand, load_grid
from rem_unlearn.bench.tuning_file import TUNING_FORMAT
from rem_unlearn.config import ConfigError, DataConfig, to_dict
from rem_unlearn.methods import method_names
from rem_unlearn.methods.registry import method_config
from rem_unlearn.methods.base import Times

TINY = ["experiment_overrides.data.train_size=300", "experiment_overrides.corruption.size=20",
        "experiment_overrides.data.validation_size=300", "discovery_rates=[0.5]", "methods=[ga]"]


def test_every_search_space_starts_from_the_published_setting() -> None:
    for method in method_names():
        specs = tuning.trial_specs(method, 6)
        space = tuning.search_space(method)
        size = 1
        for values in space.values():
            size *= len(values)
        assert len(specs) == min(6, size)
        assert len({json.dumps(s, default=repr, sort_keys=True) for s in specs}) == len(specs)
        for key, value in specs[0].items():  # trial 1: every key at its published value
            published = tuning.dotted_get(to_dict(method_config(method)), key)
            assert value == Times(1.0) if isinstance(value, Times) else value == published, method


def test_the_validation_split_is_training_images_outside_the_subset() -> None:
    from rem_unlearn.experiment import load_data

    try:
        train, val = load_data(DataConfig(train_size=500, evaluate_on="validation", validation_size=400))
    except Exception as err:  # the embedded data is missing
        pytest.skip(f"no Fashion-MNIST here: {err}")
    assert len(val) == 400 and not torch.isin(val.ids, train.ids).any()
    with pytest.raises(ConfigError, match="evaluate_on"):
        DataConfig(evaluate_on="holdout").validate()


def test_tune_chooses_per_corruption_without_reading_the_test_split(tmp_path: Path, monkeypatch) -> None:
    import rem_unlearn.experiment as experiment

    real = experiment.load_dataset

    def no_test_split(name, split, **kw):
        assert split != "test", "tuning read the test split"
        return real(name, split, **kw)

    monkeypatch.setattr(experiment, "load_dataset", no_test_split)
    try:
        real("fashion-mnist", "train")
    except Exception as err:
        pytest.skip(f"no Fashion-MNIST here: {err}")
    out = tmp_path / "tuning.json"
    result = tuning.tune("smoke", overrides=[*TINY, f"experiment_overrides.runtime.cache_dir={tmp_path / 'cache'}"],
                         trials=3, out=out, quiet=True)
    ga = result["methods"]["ga"]
    assert [t["trial"] for t in ga["trials"]] == [1, 2, 3] and ga["trials"][0]["settings"] == {"optim": {"lr": 0.005}}
    assert {t["settings"]["optim"]["lr"] for t in ga["trials"]} <= {0.00125, 0.0025, 0.005, 0.01}
    for corruption, chosen in ga["chosen"].items():  # the best mean validation score of its corruption
        best = max(sum(t["validation_score"][corruption].values()) for t in ga["trials"])
        assert sum(ga["trials"][chosen["trial"] - 1]["validation_score"][corruption].values()) == best
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    with pytest.raises(ConfigError, match="overlap"):
        tuning.tune("smoke", overrides=TINY, dev_seeds=(0,), out=tmp_path / "x.json")


def test_a_tuned_grid_runs_each_corruption_with_its_choice(tmp_path: Path) -> None:
    path = tmp_path / "tuning.json"
    chosen = {"poison": {"trial": 2, "settings": {"optim": {"lr": 0.001}}, "validation_score": 1.0},
              "random": {"trial": 1, "settings": {"optim": {"lr": 0.005}}, "validation_score": 1.0}}
    path.write_text(json.dumps({"format": TUNING_FORMAT, "protocol": {}, "methods": {"ga": {"chosen": chosen}}}))
    lr = {(c.method, c.corruption): c.overrides["optim"]["lr"]
          for c in expand(load_grid("smoke", overrides=[f"tuned={path}"])) if c.method == "ga"}
    assert lr[("ga", "poison")] == 0.001 and lr[("ga", "random")] == 0.005
    over = {c.corruption: c.overrides["optim"]["lr"]
            for c in expand(load_grid("smoke", overrides=[f"tuned={path}", "method_overrides.ga.optim.lr=0.02"]))
            if c.method == "ga"}
    assert set(over.values()) == {0.02}  # the grid's own overrides win
    published = {c.key for c in expand(load_grid("smoke"))}
    assert published != {c.key for c in expand(load_grid("smoke", overrides=[f"tuned={path}"]))}
    with pytest.raises(ConfigError, match="tuning"):
        load_grid("smoke", overrides=[f"tuned={tmp_path / 'missing.json'}"])


def test_the_embedded_presets_run_tuned_and_published_is_one_override_away() -> None:
    """default, quick and faithful run the shipped tuning; `tuned=published` is the grid they were before it (the
    same grid id, so a results folder of published cells resumes), and its cells run the published settings."""
    from rem_unlearn.bench.grid import grid_id

    for preset in ("default", "quick", "faithful"):
        assert load_grid(preset).tuned == "default", preset
    tuned = {(c.method, c.corruption): c.overrides for c in expand(load_grid("quick"))}
    published_grid = load_grid("quick", overrides=["tuned=published"])
    assert published_grid.tuned == "" and grid_id(published_grid) == grid_id(load_grid("quick", overrides=["tuned="]))
    published = {(c.method, c.corruption): c.overrides for c in expand(published_grid)}
    assert "optim" not in published[("finetune", "interclass")]  # the recipe's learning rate
    assert tuned[("finetune", "interclass")]["optim"]["lr"] == 0.02  # tuned: 4 x the recipe's
    assert published[("none", "poison")] == tuned[("none", "poison")]  # nothing to tune


def test_the_report_names_the_settings_and_the_protocol(tmp_path: Path) -> None:
    """grid.json says which methods ran tuned (and how) or published; the summary, leaderboard and page say it."""
    from rem_unlearn.bench.store import ResultStore
    from rem_unlearn.report import build_report

    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"format": TUNING_FORMAT, "protocol": {"trials": 4, "dev_seeds": [100]},
                                "methods": {"ga": {"chosen": {}}}}))
    for tuned, expected in (("", "Every method ran at its published settings"),
                            (str(path), f"Tuned with `{path}`: 4 trials per method from its own search space, on "
                                        "dev seeds 100 and validation images carved from the training split (never "
                                        "the test split), chosen per corruption kind: ga. At their published "
                                        "settings (not in the file): finetune, rem.")):
        folder = tmp_path / f"results{len(tuned)}"
        ResultStore(folder).write_grid(load_grid("smoke", overrides=[f"tuned={tuned}"]))
        assert json.loads((folder / "grid.json").read_text())["settings"].startswith(expected)
        paths = build_report([], folder)
        for name in ("summary", "leaderboard", "index"):
            assert expected in paths[name].read_text().replace("&#x27;", "'"), name


def test_tune_command_resumes_its_own_file_and_refuses_others(tmp_path: Path, capsys) -> None:
    from rem_unlearn.cli import main

    try:
        from rem_unlearn.data import load_dataset

        load_dataset("fashion-mnist", "train")
    except Exception as err:
        pytest.skip(f"no Fashion-MNIST here: {err}")
    out = tmp_path / "tuning.json"
    args = ["tune", "--preset", "smoke", "--trials", "2", "--out", str(out), "--quiet", *TINY,
            f"experiment_overrides.runtime.cache_dir={tmp_path / 'cache'}"]
    assert main(args) == 0 and "ga: 2 trials" in capsys.readouterr().out
    first = out.read_text()
    assert main(args) == 0 and out.read_text() == first  # a rerun resumes: every trial's cells are done
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}')
    assert main([*args[:6], str(other), *args[7:]]) == 2 and other.read_text() == '{"mine": 1}'
    assert main([*args[:4], "0", *args[5:]]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
