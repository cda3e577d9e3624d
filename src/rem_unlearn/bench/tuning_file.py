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
