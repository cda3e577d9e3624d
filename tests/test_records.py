"""Committed benchmark records come from the code as it is (scripts/check_records.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
ARCHIVED = ROOT / "research" / "records" / "archive" / "faithful-2026-11-29" / "records"


def checker():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: record ages cannot be read")
    return load_script("check_records")


def test_every_committed_record_comes_from_the_code_as_it_is() -> None:
    check = checker()
    assert not check.problems(check.bench_records())


def test_committed_records_keep_their_keys(monkeypatch) -> None:
    """A resume finds a committed record by its key: every record of the faithful folder is a cell of the preset
    under the code as it is (keyed as made, with ``auto`` autocast as bf16, on a CPU that has it)."""
    import rem_unlearn.experiment as experiment
    from rem_unlearn.bench import cell_key, expand, load_grid

    monkeypatch.setattr(experiment, "resolve_precision", lambda runtime, device=None: "bf16")
    keys = {json.loads(p.read_text())["key"] for p in (ROOT / "research/records/faithful/records").glob("*.json")}
    assert len(keys) >= 100
    assert keys <= {cell_key(cell) for cell in expand(load_grid("faithful"))}


def test_a_dirty_an_old_and_a_current_record(tmp_path: Path) -> None:
    """Planted records: a dirty stamp and a commit whose REM code differs from today's are refused, HEAD passes."""
    check = checker()
    template = json.loads(next(ARCHIVED.glob("*.json")).read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()[0]
    folder = tmp_path / "plain" / "records"
    folder.mkdir(parents=True)
    for name, commit in (("dirty", head + "-dirty"), ("old", first), ("current", head)):
        (folder / f"{name}.json").write_text(json.dumps({**template, "cell": {**template["cell"], "method": "rem"},
                                                         "commit": commit}))
    archive = tmp_path / "archive" / "old" / "records"
    archive.mkdir(parents=True)
    shutil.copy(folder / "old.json", archive / "old.json")
    paths = check.bench_records(tmp_path)
    assert [p.name for p in paths] == ["current.json", "dirty.json", "old.json"]  # the archive is exempt
    found = check.problems(paths)
    assert len(found) == 2
    assert "dirty.json: not stamped with a clean commit" in found[0]
    assert "old.json: made at" in found[1] and "rem's code has changed since: src/rem_unlearn/" in found[1]


def test_a_method_built_on_another_counts_that_methods_code() -> None:
    """detect-rem is REM after a detection: REM's module and the scorers belong to its code, and a helper module
    a method imports belongs to that method's (ANP's clean-data sample)."""
    check = checker()
    detect = check.method_sources("detect-rem")
    assert "src/rem_unlearn/methods/detect.py" in detect and "src/rem_unlearn/methods/rem.py" in detect
    assert "src/rem_unlearn/discovery/rem_transfer.py" in detect
    assert "src/rem_unlearn/methods/retrain.py" in check.method_sources("detect-retrain")
    assert "src/rem_unlearn/methods/clean_data.py" in check.method_sources("anp")
    assert "src/rem_unlearn/methods/rem.py" not in check.method_sources("ga")


def test_advise_reads_the_table_the_committed_records_give() -> None:
    """src/rem_unlearn/bench/advice.json is scripts/advice_table.py's output over the committed records."""
    advice = load_script("advice_table")
    assert json.loads(advice.TABLE.read_text()) == advice.table(), "run scripts/advice_table.py"


def test_only_the_reviewed_edit_of_a_file_is_forgiven(monkeypatch) -> None:
    """A record stays valid across a reviewed edit (or a chain of them) and across no other."""
    check = checker()
    monkeypatch.setattr(check, "REVIEWED", {("f.py", "a"): ("b", "why"), ("f.py", "b"): ("c", "why")})
    content = {"old": "a", "": "c"}  # the file at the record's commit, and in the working tree
    monkeypatch.setattr(check, "blob", lambda rev, path: content[rev])
    assert check.reviewed("old", "f.py")
    content[""] = "d"  # an edit after the reviewed ones
    assert not check.reviewed("old", "f.py")
    content.update(old="x", **{"": "b"})  # an unreviewed content before them
    assert not check.reviewed("old", "f.py") and not check.reviewed("old", "g.py")
