"""Regularity × discovery-rate heatmaps (one panel per method) and a wall-time bar chart."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from ..files import atomic_savefig  # noqa: E402
from .tables import TRAINED, is_ok, mean_sem, metric_value, reference_method  # noqa: E402

#: Rows top to bottom: statistical regularity of the corruption, high to low.
REGULARITY: tuple[tuple[str, str], ...] = (
    ("poison", "High\n(poison)"),
    ("interclass", "Med.\n(interclass)"),
    ("random", "Low\n(random)"),
)
DPI = 110


def _cell_value(values: list[float]) -> tuple[float, float, int]:
    mean, sem = mean_sem(values)
    return mean, sem, len(values)


def plot_heatmaps(
    records: Iterable[Mapping[str, Any]],
    path: str | Path,
    metric: str = "score",
    dataset: str | None = None,
    variant: str | None = None,
    span: float = 100.0,
    ncols: int = 4,
    lower_is_better: bool = False,
) -> Path:
    """One heatmap panel per unlearning method: regularity rows × [Trained, discovery rates].

    A cell shows the mean over seeds of ``metric`` (second line: ``±SEM`` when >1 seed).
    Colour encodes ``value − trained`` for that row (the ``none`` model's mean over rates
    and seeds of the same corruption) on a symmetric diverging scale over ``±span`` (100: the
    whole range a score can move, so no two scores a reader compares share a saturated colour)
    (RdBu: red = worse than not unlearning, blue = better), so panels are comparable and
    "did unlearning help here?" reads at a glance. Grey: ``×`` = only failed records,
    ``–`` = no record; cells whose row has no trained reference are grey but keep their
    number. Records are filtered to ``dataset``/``variant`` when given. On the ETD model,
    whose grid runs ``etd`` rather than ``none``, ``etd`` (the trained ETD model in drop
    mode) is the reference column.  ``lower_is_better`` (attack success) flips the colour, so blue stays better.
    A record without the metric (attack success on a label corruption) counts as no record.
    """
    path = Path(path)
    recs = [
        r for r in records
        if (dataset is None or r.get("cell", {}).get("dataset") == dataset)
        and (variant is None or r.get("cell", {}).get("variant") == variant)
    ]
    reference = reference_method(recs)
    ok_vals: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    failed: set[tuple[str, str, float]] = set()
    trained_seed: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    methods: set[str] = set()
    rates: set[float] = set()
    for r in recs:
        cell = r["cell"]
        method, corr = cell.get("method"), cell.get("corruption")
        rate = float(cell.get("discovery_rate"))
        if method != reference:
            methods.add(method)
            rates.add(rate)
        key = (method, corr, rate)
        if not is_ok(r):
            failed.add(key)
            continue
        v = metric_value(r, metric)
        if v is None:
            continue
        if method == reference:
            trained_seed[corr][cell.get("seed")].append(v)
        else:
            ok_vals[key].append(v)
    # Trained reference per row: mean over rates per seed, then mean ± SEM over seeds.
    trained = {
        corr: _cell_value([float(np.mean(v)) for v in per_seed.values()])
        for corr, per_seed in trained_seed.items()
    }
    col_rates = sorted(rates)
    pooled: dict[str, list[float]] = defaultdict(list)
    for (m, _, _), v in ok_vals.items():
        pooled[m].extend(v)
    # Panels by overall mean of the metric, best first; methods with no ok cell last.
    order = sorted(methods, key=lambda m: -float(np.mean(pooled[m])) if pooled[m] else math.inf)
    failed_trained = {c for (m, c, _) in failed if m == reference}
    cmap, norm = colour_scale(span)

    n = max(len(order), 1)
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    panel_w = 0.95 * (len(col_rates) + 1) + 1.3
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_w + 1.0, rows * 2.6 + 0.5),
                             squeeze=False, constrained_layout=True)
    xlabels = ["Trained"] + [f"{r:g}" for r in col_rates]
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    if not order:
        axes[0, 0].set_visible(True)
        axes[0, 0].text(0.5, 0.5, "no data", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, method in zip(axes.flat, order):
        grid = np.full((len(REGULARITY), len(xlabels)), np.nan)
        for i, (corr, _) in enumerate(REGULARITY):
            ref = trained.get(corr)
            entries: list[tuple[float, float, int] | str] = [
                ref if ref else ("×" if corr in failed_trained else "–")]
            for rate in col_rates:
                vals = ok_vals.get((method, corr, rate))
                entries.append(_cell_value(vals) if vals else ("×" if (method, corr, rate) in failed else "–"))
            for j, entry in enumerate(entries):
                if isinstance(entry, str):
                    ax.text(j, i, entry, ha="center", va="center", fontsize=11, color="dimgray")
                    continue
                mean, sem, count = entry
                diff = (ref[0] - mean if lower_is_better else mean - ref[0]) if ref else math.nan
                grid[i, j] = diff
                dark = not math.isnan(diff) and abs(diff) > 0.6 * span
                colour = "white" if dark else "black"
                ax.text(j, i - (0.12 if count > 1 else 0), f"{mean:.1f}", ha="center", va="center",
                        fontsize=9, color=colour)
                if count > 1:
                    ax.text(j, i + 0.22, f"±{sem:.1f}", ha="center", va="center", fontsize=6.5, color=colour)
        ax.imshow(cmap(norm(np.ma.masked_invalid(grid))), aspect="auto")
        ax.axvline(0.5, color="black", lw=1.2)  # separate the reference column
        ax.set_xticks(range(len(xlabels)), xlabels, fontsize=8)
        ax.set_yticks(range(len(REGULARITY)), [lbl for _, lbl in REGULARITY], fontsize=8)
        ax.set_xlabel("discovery rate", fontsize=8)
        ax.set_title(method, fontsize=10)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), shrink=0.8,
                 label=f"trained − {metric}" if lower_is_better else f"{metric} − trained")
    where = "/".join(x for x in (dataset, variant) if x)
    fig.suptitle(f"{metric}" + (f" — {where}" if where else ""), fontsize=11)
    atomic_savefig(fig, path, dpi=DPI)
    plt.close(fig)
    return path


def colour_scale(span: float = 100.0):
    """The heatmaps' colours: RdBu over [-span, span] of (score - trained); grey where there is no value."""
    return matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey"), Normalize(vmin=-span, vmax=span)


def plot_wall_time(records: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Mean unlearning wall time per method (± SEM), log scale when times span >100×.

    The trained model (``none``) is left out: its time is training, not unlearning.
    """
    path = Path(path)
    times: dict[str, list[float]] = defaultdict(list)
    for r in records:
        v = metric_value(r, "wall_time") if is_ok(r) else None
        if v is not None and r["cell"].get("method") != TRAINED:
            times[r["cell"]["method"]].append(v)
    stats = sorted(((m, *mean_sem(v)) for m, v in times.items()), key=lambda t: t[1])
    fig, ax = plt.subplots(figsize=(6, 0.45 * max(len(stats), 2) + 1.2), constrained_layout=True)
    if stats:
        names, means, sems = zip(*stats)
        ax.barh(range(len(names)), means, xerr=sems, color="tab:blue", capsize=3)
        ax.set_yticks(range(len(names)), names)
        positive = [m for m in means if m > 0]
        if positive and min(means) > 0 and max(positive) / min(positive) > 100:
            ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("unlearning wall time (s)")
    ax.set_title("Wall time per method")
    atomic_savefig(fig, path, dpi=DPI)
    plt.close(fig)
    return path
