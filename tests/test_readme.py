"""The README's first example runs as written, on the embedded Fashion-MNIST (skipped where it is absent)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- readme-example -->")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match, "the README's example block is missing"
    return match.group(1)


def test_readme_stays_short_and_its_example_fits_fifteen_lines():
    assert len(README.read_text().splitlines()) < 150
    assert len(readme_example().strip().splitlines()) <= 15


def test_readme_example_runs_and_repairs_the_backdoor(tmp_path):
    from rem_unlearn.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", "test")
    except DatasetNotFoundError as err:
        pytest.skip(f"the embedded Fashion-MNIST is not available here: {err}")
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "REM_UNLEARN_QUIET": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    found = dict(re.findall(r"^(trained|repaired) .*'attack_success': ([\d.]+)", out.stdout, re.M))
    assert set(found) == {"trained", "repaired"}, out.stdout
    assert float(found["trained"]) > 50 and float(found["repaired"]) < 15, out.stdout  # the backdoor is gone


def test_make_test_hands_each_shared_fixture_to_one_worker(request):
    """`make test` gives every test of an expensive shared fixture to one pytest-xdist worker (--dist loadgroup),
    which builds it once; where xdist cannot group (pytest 9.2), both workers would build it."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by make test's pytest-xdist workers (--dist loadgroup)")
    shared = [item for item in request.session.items if "poisoned" in item.fixturenames]
    if not shared:
        pytest.skip("no test of the planted tasks was collected")
    assert all(item.nodeid.endswith("@planted") for item in shared), [item.nodeid for item in shared]
