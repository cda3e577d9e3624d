"""docs/methods.md's "Add your own method": its code, run exactly as written, registers a method that a grid runs."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def guide_blocks() -> list[str]:
    text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    section = text.split("## Add your own method", 1)[1]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def relabel_module(monkeypatch):
    from rem_unlearn.methods import METHODS

    module = types.ModuleType("relabel")
    monkeypatch.setitem(sys.modules, "relabel", module)  # as `import relabel` would: dataclasses look it up
    exec(compile(guide_blocks()[0], "docs/methods.md", "exec"), module.__dict__)
    yield module
    METHODS.pop("relabel", None)


def test_the_guide_method_runs_in_a_grid_and_reaches_the_report(relabel_module, tmp_path, monkeypatch):
    from rem_unlearn.methods import get_method
    from rem_unlearn.methods.registry import method_config

    assert get_method("relabel") is relabel_module.RandomRelabel
    with pytest.raises(Exception, match="forget_weight must be >= 0"):
        method_config("relabel", {"forget_weight": -1.0})
    usage = guide_blocks()[1]
    cache = tmp_path / "cache"
    usage = usage.replace('overrides=[', f'overrides=["experiment_overrides.runtime.cache_dir={cache}", ')
    assert str(cache) in usage
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(usage, "docs/methods.md", "exec"), namespace)
    records = namespace["records"]
    mine = [r for r in records if r["cell"]["method"] == "relabel"]
    assert mine and all(r["status"] == "ok" for r in mine), [r.get("error") for r in mine]
    assert all(r["config"]["method"]["forget_weight"] == 2.0 for r in mine)
    summary = (tmp_path / "results" / "relabel" / "summary.md").read_text()
    assert re.search(r"^\| relabel \|", summary, flags=re.M)
