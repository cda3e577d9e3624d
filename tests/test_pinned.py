"""Results that cannot drift silently: the `pinned` grid against its recorded metrics (scripts/pin_results.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pinned_grid_matches_its_recorded_metrics(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("pin_results", ROOT / "scripts" / "pin_results.py")
    pin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin)
    expected = json.loads((ROOT / "tests" / "data" / "pinned_metrics.json").read_text())
    got = pin.pinned_metrics(tmp_path / "results", tmp_path / "cache")
    assert set(got) == set(expected["cells"])
    drift = [f"{cell} {m}: {got[cell][m]:.2f} vs pinned {want:.2f} (tolerance {expected['tolerance'][m]})"
             for cell, metrics in expected["cells"].items() for m, want in metrics.items()
             if abs(got[cell][m] - want) > expected["tolerance"][m]]
    assert not drift, "results drifted from tests/data/pinned_metrics.json:\n" + "\n".join(drift)
