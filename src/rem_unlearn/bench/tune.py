"""Equal, test-free tuning: every method gets the same number of trials from its own search space.

Protocol (the tuning file records it):

* Each method's config declares ``search_space`` (dotted field -> values, from its paper's ranges;
  ``Times(f)`` is f x the value the method resolves to in the grid, e.g. the recipe's learning rate).
* Trial 1 is the published setting; the others are distinct draws from the space (seeded), up to
  ``trials`` for every method.  A method with nothing to tune runs its one setting.
* Trials run as bench grids on **dev seeds** (corruption, discovery, training and unlearning seeds that no
  reported cell uses) and are scored on a **validation split** carved from the training split
  (``data.evaluate_on=validation``): the test split is never read.
* Per method and corruption kind, the trial with the best mean validation score over the discovery rates
  wins; ties go to the earlier trial (the published setting first).

A grid with ``tuned=<file>`` runs each (method, corruption) with its chosen setting under the grid's own
overrides; ``tuned=published`` runs the published settings.
"""

from __future__ import annotations

import copy
import itertools
import random
import statistics
from pathlib import Path
from typing import Any

from ..config import ConfigError, _merge, from_dict
from ..files import atomic_write_json
from .grid import GridConfig, expand, grid_dict, load_grid
from .tuning_file import TUNING_FORMAT

DEV_SEEDS = (100,)


def search_space(method: str) -> dict[str, tuple]:
    from ..methods.registry import get_method

    return dict(get_method(method).Config.search_space)


def trial_specs(method: str, trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """The settings a method's trials try: the published one first, then distinct seeded draws."""
    from ..config import to_dict
    from ..methods.base import Times
    from ..methods.registry import method_config

    space = search_space(method)
    if not space:
        return [{}]
    defaults = to_dict(method_config(method))
    keys = sorted(space)
    published = {k: Times(1.0) if isinstance(space[k][0], Times) else dotted_get(defaults, k) for k in keys}
    if any(published[k] not in space[k] for k in keys):
        raise ConfigError(f"{method}: its search space does not contain its published setting")
    rest = [g for g in (dict(zip(keys, combo)) for combo in itertools.product(*(space[k] for k in keys)))
            if g != published]
    random.Random(seed).shuffle(rest)
    return [published, *rest[:max(0, trials - 1)]]


def dotted_get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def concrete(spec: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """A trial's spec as nested method overrides: ``Times(f)`` becomes f x the resolved value."""
    from ..methods.base import Times

    settings: dict[str, Any] = {}
    for dotted, value in spec.items():
        if isinstance(value, Times):
            value = round(float(dotted_get(resolved, dotted)) * value.factor, 10)
        for part in reversed(dotted.split(".")):
            value = {part: value}
        settings = _merge(settings, value)
    return settings


def tuning_grid(grid: GridConfig, method: str, settings: dict[str, Any], dev_seeds) -> GridConfig:
    """The grid one trial runs: ``method`` only, with ``settings``, on dev seeds, scored on validation images."""
    data = grid_dict(grid)
    data.update(methods=[method], variant_methods={}, seeds=list(dev_seeds), tuned="",
                discovery_modes=["uniform"])
    data["method_overrides"] = {method: _merge(copy.deepcopy(grid.method_overrides.get(method, {})), settings)}
    data["experiment_overrides"] = _merge(data.get("experiment_overrides", {}),
                                          {"data": {"evaluate_on": "validation", "test_size": None}})
    trial = from_dict(GridConfig, data)
    trial.validate()
    return trial


def tune(preset: str = "default", config=None, overrides: list[str] | None = None, methods: list[str] | None = None,
         trials: int = 6, dev_seeds=DEV_SEEDS, out: str | Path = "tuning.json", work: str | Path | None = None,
         draw_seed: int = 0, **run_kwargs) -> dict[str, Any]:
    """Tune ``methods`` of a grid preset with equal trials on dev seeds and validation images; writes ``out``.

    Trial grids run into ``work`` (default: next to ``out``) through :func:`run_grid`, so an interrupted
    tuning resumes.  ``run_kwargs`` go to :func:`run_grid` (``engine``, ``workers``, ``quiet``, ...).
    """
    from .runner import run_grid

    grid = load_grid(preset, config, overrides)
    if set(dev_seeds) & set(grid.seeds):
        raise ConfigError(f"dev seeds {sorted(dev_seeds)} overlap the grid's reported seeds {grid.seeds}")
    out = Path(out)
    work = Path(work) if work else out.with_name(out.stem + "-trials")
    methods = methods or list(dict.fromkeys(m for v in grid.variants for m in grid.methods_for(v)))
    result: dict[str, Any] = {
        "format": TUNING_FORMAT,
        "protocol": {"preset": preset, "overrides": list(overrides or []), "trials": trials,
                     "dev_seeds": list(dev_seeds), "draw_seed": draw_seed, "evaluate_on": "validation",
                     "selection": "best mean validation score over the discovery rates, per corruption kind; "
                                  "ties to the earlier trial (the published setting is trial 1)"},
        "methods": {}}
    for method in methods:
        specs = trial_specs(method, trials, draw_seed)
        base_cells = expand(tuning_grid(grid, method, {}, dev_seeds))
        resolved = base_cells[0].resolved_method
        entry: dict[str, Any] = {"space": {k: [repr(v) for v in vals] for k, vals in search_space(method).items()},
                                 "trials": [], "chosen": {}}
        for i, spec in enumerate(specs, 1):
            settings = concrete(spec, resolved)
            records = run_grid(tuning_grid(grid, method, settings, dev_seeds), work / method / f"trial-{i}",
                               **run_kwargs)
            scores: dict[str, dict[str, float]] = {}
            for r in records:
                if r["status"] != "ok":
                    raise RuntimeError(f"{method} trial {i}: a cell failed:\n{r['error']}")
                cell = r["cell"]
                scores.setdefault(cell["corruption"], {})[f"{cell['discovery_rate']:g}"] = round(
                    r["metrics"]["score"], 3)
            entry["trials"].append({"trial": i, "spec": {k: repr(v) for k, v in spec.items()}, "settings": settings,
                                    "validation_score": scores})
        for corruption in grid.corruptions:
            means = [statistics.mean(t["validation_score"][corruption].values()) for t in entry["trials"]]
            best = max(range(len(means)), key=lambda j: (means[j], -j))
            entry["chosen"][corruption] = {"trial": best + 1, "settings": entry["trials"][best]["settings"],
                                           "validation_score": round(means[best], 3)}
        result["methods"][method] = entry
        atomic_write_json(out, result)
    return result
