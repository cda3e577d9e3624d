"""Results that cannot drift silently: the `pinned` grid against the metrics recorded for this machine's
numerics (scripts/pin_results.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pin_module():
    spec = importlib.util.spec_from_file_location("pin_results", ROOT / "scripts" / "pin_results.py")
    pin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pin)
    return pin


def test_pinned_grid_matches_its_recorded_metrics(tmp_path: Path) -> None:
    pin = pin_module()
    expected = json.loads((ROOT / "tests" / "data" / "pinned_metrics.json").read_text())
    machine = pin.numerics_fingerprint()
    pins = expected["machines"].get(machine)
    if pins is None:
        pytest.skip(f"no pinned metrics for this machine's numerics ({machine}; pinned: "
                    f"{', '.join(sorted(expected['machines']))}): run scripts/pin_results.py here and commit "
                    "tests/data/pinned_metrics.json")
    got = pin.pinned_metrics(tmp_path / "results", tmp_path / "cache")
    assert set(got) == set(pins["cells"])
    drift = [f"{cell} {m}: {got[cell][m]:.2f} vs pinned {want:.2f} (tolerance {expected['tolerance'][m]})"
             for cell, metrics in pins["cells"].items() for m, want in metrics.items()
             if abs(got[cell][m] - want) > expected["tolerance"][m]]
    assert not drift, "results drifted from tests/data/pinned_metrics.json:\n" + "\n".join(drift)


def test_numerics_fingerprint_is_stable_and_tells_kernels_apart() -> None:
    pin = pin_module()
    assert pin.numerics_fingerprint() == pin.numerics_fingerprint()
    assert pin.numerics_fingerprint("fp32") != pin.numerics_fingerprint("bf16")
