"""The tuning file `rem-unlearn tune` writes, as grids read it (``tuned=``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..files import read_json_object

TUNING_FORMAT = 1

#: Tuning files shipped with the package, by name (``tuned=default``); any other value is a path.
SHIPPED = Path(__file__).resolve().parent / "tuning"


def load_tuning(name_or_path: str | Path) -> dict[str, Any]:
    shipped = SHIPPED / f"{name_or_path}.json"
    path = shipped if shipped.is_file() else Path(name_or_path)
    if not path.is_file():
        names = sorted(p.stem for p in SHIPPED.glob("*.json"))
        raise ConfigError(f"tuned={name_or_path!r} is neither a tuning file nor a shipped tuning "
                          f"({', '.join(names) or 'none shipped'}); make one with `rem-unlearn tune`")
    data = read_json_object(path, ConfigError, "tuning file")
    if data.get("format") != TUNING_FORMAT or "methods" not in data:
        raise ConfigError(f"{path} is not a tuning file of format {TUNING_FORMAT} (made by `rem-unlearn tune`)")
    return data


def tuned_settings(tuning: dict[str, Any], method: str, corruption: str) -> dict[str, Any]:
    """The chosen overrides of ``method`` for ``corruption`` ({} for a method the file does not tune)."""
    chosen = tuning["methods"].get(method, {}).get("chosen", {})
    return copy.deepcopy(chosen.get(corruption, {}).get("settings", {}))


def settings_note(tuned: str, tuning: dict[str, Any] | None, methods: list[str]) -> str:
    """One sentence for the report: which settings the grid's methods ran with, and by which protocol."""
    if not tuned:
        return "Every method ran at its published settings (`tuned=published`)."
    protocol = tuning.get("protocol", {})
    tuned_here = [m for m in methods if m in tuning["methods"]]
    published = [m for m in methods if m not in tuning["methods"] and m != "none"]
    note = (f"Tuned with `{tuned}`: {protocol.get('trials', '?')} trials per method from its own search space, "
            f"on dev seeds {', '.join(map(str, protocol.get('dev_seeds', [])))} and validation images carved from "
            f"the training split (never the test split), chosen per corruption kind: {', '.join(tuned_here)}.")
    if published:
        note += f" At their published settings (not in the file): {', '.join(published)}."
    return note


def tuning_table(tuning: dict[str, Any]) -> str:
    """The trials of every method and corruption (mean validation score) and the choice, as markdown."""
    corruptions = sorted({c for e in tuning["methods"].values() for c in e["chosen"]})
    lines = ["| method | trial | setting | " + " | ".join(corruptions) + " |",
             "|---|---:|---|" + "---:|" * len(corruptions)]
    for method, entry in tuning["methods"].items():
        for t in entry["trials"]:
            cells = []
            for c in corruptions:
                scores = t["validation_score"].get(c, {})
                mean = sum(scores.values()) / max(1, len(scores))
                chosen = entry["chosen"][c]["trial"] == t["trial"]
                cells.append(f"**{mean:.1f}**" if chosen else f"{mean:.1f}")
            spec = ", ".join(f"{k} {v}" for k, v in t.get("spec", {}).items()) or "(nothing to tune)"
            lines.append(f"| {method} | {t['trial']} | {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(tuning_table(load_tuning(sys.argv[1] if len(sys.argv) > 1 else "default")))
