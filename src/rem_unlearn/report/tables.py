"""Flat rows, CSV export, mean ± SEM summaries and markdown tables of benchmark records.

Records are the per-cell JSON dicts written by the benchmark (``schema``, ``status``,
``cell``, ``metrics``, ``wall_time_s``...). Failed records are kept in the CSV so that
nothing silently disappears, but every aggregate uses ``status == "ok"`` records only.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..files import atomic_path

#: Metrics summarised per method; ``wall_time`` comes from ``wall_time_s``.
SUMMARY_METRICS: tuple[str, ...] = ("healed", "utility", "score", "wall_time")
#: Metrics where a higher mean is better (bolded in tables).
HIGHER_IS_BETTER: tuple[str, ...] = ("healed", "utility", "score")
TRAINED = "none"

Stat = tuple[float, float]  # (mean, SEM)


def is_ok(record: Mapping[str, Any]) -> bool:
    """Only successful records with metrics enter aggregates."""
    return record.get("status") == "ok" and isinstance(record.get("metrics"), Mapping)


def metric_value(record: Mapping[str, Any], name: str) -> float | None:
    """One metric of a record; ``wall_time`` is the top-level ``wall_time_s``."""
    if name == "wall_time":
        value = record.get("wall_time_s")
    else:
        value = (record.get("metrics") or {}).get(name)
    return None if value is None else float(value)


def mean_sem(values: Sequence[float]) -> Stat:
    """Mean and standard error (ddof=1 std / sqrt(n)); SEM is 0 for a single value."""
    if not values:
        return (math.nan, math.nan)
    arr = np.asarray(values, dtype=float)
    sem = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return (float(arr.mean()), sem)


def _error_line(error: Any) -> str:
    """The last non-empty traceback line: enough to triage without multi-line CSV cells."""
    if not error:
        return ""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def records_to_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One flat dict per record (key, status, cell fields, metrics, wall time, error)."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        row: dict[str, Any] = {"key": rec.get("key"), "status": rec.get("status")}
        row.update(rec.get("cell") or {})
        row.update(rec.get("metrics") or {})
        row["wall_time_s"] = rec.get("wall_time_s")
        row["error"] = _error_line(rec.get("error"))
        rows.append(row)
    return rows


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as CSV atomically, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: dict[str, None] = {}
    for row in rows:
        fields.update(dict.fromkeys(row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return path


def summary(
    records: Iterable[Mapping[str, Any]], group: Sequence[str] = ("dataset", "variant")
) -> dict[tuple[Any, ...], dict[str, dict[str, Any]]]:
    """Per group (values of ``group`` cell fields) and method: ``{metric: (mean, sem), "n": n}``.

    Pools every ok cell and seed of a method in the group, i.e. the headline number of
    a method averaged over corruptions and discovery rates.
    """
    values: dict[tuple[Any, ...], dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    counts: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for rec in records:
        if not is_ok(rec):
            continue
        cell = rec["cell"]
        gkey = tuple(cell.get(g) for g in group)
        method = cell.get("method")
        counts[gkey][method] += 1
        for m in SUMMARY_METRICS:
            v = metric_value(rec, m)
            if v is not None:
                values[gkey][method][m].append(v)
    out: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for gkey in sorted(counts, key=lambda k: tuple(str(x) for x in k)):
        out[gkey] = {
            method: {**{m: mean_sem(values[gkey][method][m]) for m in SUMMARY_METRICS}, "n": n}
            for method, n in counts[gkey].items()
        }
    return out


def method_label(method: str) -> str:
    """Display name; the trained (not unlearned) reference is spelled out."""
    return "Trained (none)" if method == TRAINED else method


#: How the paper's tables name the methods.
PAPER_NAMES = {"rem": "REM", "none": "Trained", "etd": "ETD", "npo": "NPO", "scrub": "SCRUB",
               "bad-teacher": "BadT", "retrain": "Retrained", "potion": "Potion", "ga": "GA", "salun": "SalUn",
               "ssd": "SSD", "finetune": "Finetune", "cf-k": "CF-k", "eu-k": "EU-k"}


def paper_label(method: str, variant: str) -> str:
    """The paper's name of a method on a pre-training variant: "NPO (ETD)" is NPO run on the ETD model."""
    name = PAPER_NAMES.get(method, method)
    return f"{name} (ETD)" if variant == "etd" and method != "etd" else name


def main_table(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per dataset, one table of every (method, variant) as the paper's main table names them, mean ± SEM
    over every ok cell (corruptions x rates x seeds), best score first."""
    by_dataset: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        if is_ok(rec):
            cell = rec["cell"]
            labelled = {**rec, "cell": {**cell, "method": (cell["method"], cell["variant"])}}
            by_dataset[cell["dataset"]].append(labelled)
    tables = {}
    for dataset, recs in sorted(by_dataset.items()):
        (group,) = summary(recs, group=("dataset",)).values()
        tables[dataset] = markdown_table(group, label=lambda key: paper_label(*key),
                                         reference=lambda key: key[0] in (TRAINED, "etd"))
    return tables


def _fmt(stat: Stat) -> str:
    mean, sem = stat
    return "–" if math.isnan(mean) else f"{mean:.2f} ± {sem:.2f}"


def markdown_table(group_summary: Mapping[Any, Mapping[str, Any]], label=method_label,
                   reference=lambda method: method == TRAINED) -> str:
    """Pipe table of one group's summary, methods by mean score (descending).

    The best mean of healed/utility/score is bold (ties compared at display precision).
    Reference rows (the trained model) do not compete for bold: they are baselines, not methods.
    """
    def score_key(item: tuple[str, Mapping[str, Any]]) -> float:
        mean = item[1]["score"][0]
        return -math.inf if math.isnan(mean) else mean

    items = sorted(group_summary.items(), key=score_key, reverse=True)
    best: dict[str, float] = {}
    for m in HIGHER_IS_BETTER:
        means = [round(s[m][0], 2) for meth, s in items if not reference(meth) and not math.isnan(s[m][0])]
        if means:
            best[m] = max(means)
    lines = [
        "| Method | Healed | Utility | Score | Wall time (s) | n |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, stats in items:
        cells = [label(method)]
        for m in SUMMARY_METRICS:
            text = _fmt(stats[m])
            if not reference(method) and m in best and round(stats[m][0], 2) == best[m]:
                text = f"**{text}**"
            cells.append(text)
        cells.append(str(stats["n"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def reference_method(records: Iterable[Mapping[str, Any]]) -> str:
    """The trained-model reference among ``records``: ``none``, else ``etd``.

    The grids run ``etd`` (the ETD-trained model in drop mode, unchanged) on the ETD
    model instead of ``none``; both are that variant's trained model.
    """
    methods = {(r.get("cell") or {}).get("method") for r in records}
    return TRAINED if TRAINED in methods or "etd" not in methods else "etd"


def catastrophic_cells(
    records: Iterable[Mapping[str, Any]], margin: float = 10.0, metric: str = "score"
) -> dict[str, list[dict[str, Any]]]:
    """Per unlearning method, the ok cells whose ``metric`` is more than ``margin`` below the trained model's.

    The reference is the mean ``metric`` of the trained model's records (``none``, or ``etd`` on an
    ETD model: :func:`reference_method`) with the same (dataset, variant, corruption, seed):
    unlearning that ends up worse than not unlearning at all (score), or a model whose utility
    collapsed, is the failure mode this flags. Cells without a trained reference are not judged.
    Each entry is the cell dict plus ``value`` and ``trained_value``.
    """
    recs = [r for r in records if is_ok(r)]

    def ref_key(cell: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(cell.get(k) for k in ("dataset", "variant", "corruption", "seed"))

    by_variant: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        by_variant[(r["cell"].get("dataset"), r["cell"].get("variant"))].append(r)
    reference = {k: reference_method(v) for k, v in by_variant.items()}

    def is_reference(cell: Mapping[str, Any]) -> bool:
        return cell.get("method") == reference[(cell.get("dataset"), cell.get("variant"))]

    trained: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for r in recs:
        if is_reference(r["cell"]) and metric_value(r, metric) is not None:
            trained[ref_key(r["cell"])].append(metric_value(r, metric))  # type: ignore[arg-type]
    out: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        cell = r["cell"]
        method = cell.get("method")
        if is_reference(cell):
            continue
        hits = out.setdefault(method, [])
        value = metric_value(r, metric)
        ref = trained.get(ref_key(cell))
        if value is None or not ref:
            continue
        ref_value = float(np.mean(ref))
        if value < ref_value - margin:
            hits.append({**cell, "value": value, "trained_value": ref_value})
    return out


def cell_table(records: Iterable[Mapping[str, Any]], rates: Sequence[float] | None = None,
               methods: Sequence[str] | None = None, variant: str | None = None) -> str:
    """Pipe table of every (method, variant, corruption, rate) cell, mean ± SEM over seeds.

    Rows follow ``methods`` (default: the trained reference first, then by name),
    then corruption and rate. Used for the per-cell tables in the docs.
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        cell = rec.get("cell") or {}
        if not is_ok(rec) or (rates is not None and cell.get("discovery_rate") not in rates):
            continue
        if (methods is not None and cell.get("method") not in methods) or \
                (variant is not None and cell.get("variant") != variant):
            continue
        groups[(cell["method"], cell["variant"], cell["corruption"], cell["discovery_rate"])].append(rec)
    order = list(methods) if methods is not None else sorted({k[0] for k in groups},
                                                             key=lambda m: (m != TRAINED, m))
    lines = ["| Method | Variant | Corruption | Discovery | Healed | Utility | Score | Wall time (s) | n |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(groups, key=lambda k: (order.index(k[0]), k[1], k[2], k[3])):
        recs = groups[key]
        stats = [mean_sem([v for r in recs if (v := metric_value(r, m)) is not None]) for m in SUMMARY_METRICS]
        # one seed: no SEM to show
        cells = [_fmt(s) if len(recs) > 1 or math.isnan(s[0]) else f"{s[0]:.2f}" for s in stats]
        lines.append("| " + " | ".join([method_label(key[0]), key[1], key[2], f"{key[3]:g}", *cells,
                                         str(len(recs))]) + " |")
    return "\n".join(lines) + "\n"


def _distinct(values: Iterable[Any], missing: str) -> str:
    """The distinct values, in first-seen order, joined; ``missing`` where a record lacks one."""
    seen = dict.fromkeys(str(v) if v else missing for v in values)
    return "; ".join(seen)


def _short_commit(commit: Any) -> Any:
    """The first 12 hex digits and the ``-dirty`` flag: enough to find the commit, short enough for a table."""
    if not isinstance(commit, str) or len(commit) < 40:
        return commit
    return commit[:12] + commit[40:]


def leaderboard(records: Iterable[Mapping[str, Any]], heading: str) -> str:
    """One ranked table of a grid: per (method, variant) mean ± SEM of score, healed, utility and wall time,
    the number of cells, and the command, package version and commit that produced them.

    Records written before records carried ``command``/``commit`` say "not recorded".
    """
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        if is_ok(rec):
            groups[(rec["cell"].get("method"), rec["cell"].get("variant"))].append(rec)
    rows = []
    for (method, variant), recs in groups.items():
        stats = {m: mean_sem([v for r in recs if (v := metric_value(r, m)) is not None]) for m in SUMMARY_METRICS}
        rows.append((method, variant, stats, recs))
    rows.sort(key=lambda row: -math.inf if math.isnan(row[2]["score"][0]) else row[2]["score"][0], reverse=True)
    lines = [f"## {heading}", "",
             "| Rank | Method | Variant | Score | Healed | Utility | Wall time (s) | n | Command | Version | Commit |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for rank, (method, variant, stats, recs) in enumerate(rows, 1):
        command = _distinct((r.get("command") for r in recs), "not recorded")
        version = _distinct(((r.get("versions") or {}).get("rem_unlearn") for r in recs), "not recorded")
        commit = _distinct((_short_commit(r.get("commit")) for r in recs), "not recorded")
        cells = [str(rank), method_label(method), str(variant), *(_fmt(stats[m]) for m in
                                                                   ("score", "healed", "utility", "wall_time")),
                 str(len(recs)), f"`{command}`", version, f"`{commit}`"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def is_detected(record: Mapping[str, Any]) -> bool:
    """A cell whose forget set is the known ids extended by a scorer (``discovery_mode`` detected)."""
    return (record.get("cell") or {}).get("discovery_mode") == "detected"


def detected_label(record: Mapping[str, Any]) -> str:
    """``method <- scorer`` for a detected cell, the method for any other."""
    cell = record.get("cell") or {}
    return f"{cell.get('method')} <- {cell.get('scorer')}" if is_detected(record) else str(cell.get("method"))


UNIFORM = "– (the known ids only)"


def discovery_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Pipe table: precision and recall of the forget sets per corruption, discovery rate and scorer.

    One forget set per (corruption, rate, seed, scorer): the methods of a detected
    group share it.  The uniform draw (precision 100, recall = rate) is the reference row.
    """
    sets: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for rec in records:
        metrics = rec.get("metrics") or {}
        if not is_ok(rec) or metrics.get("forget_precision") is None:
            continue
        cell = rec["cell"]
        scorer = cell.get("scorer") if is_detected(rec) else UNIFORM
        sets.setdefault((cell.get("variant"), cell.get("corruption"), float(cell.get("discovery_rate")), scorer,
                         cell.get("seed")), rec)
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for (variant, corruption, rate, scorer, _), rec in sets.items():
        groups[(variant, corruption, rate, scorer)].append(rec)
    lines = ["| Variant | Corruption | Known | Scorer | Forget set size | Precision | Recall | Detection (s) | n |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]

    def order(item: tuple[tuple[Any, ...], list]) -> tuple[Any, ...]:
        variant, corruption, rate, scorer = item[0]
        return str(variant), str(corruption), rate, scorer != UNIFORM, str(scorer)

    for (variant, corruption, rate, scorer), recs in sorted(groups.items(), key=order):
        size = mean_sem([float(r.get("n_forget") or 0) for r in recs])
        stats = [mean_sem([r["metrics"][m] for r in recs]) for m in ("forget_precision", "forget_recall")]
        prec, rec_ = (_fmt(s) if len(recs) > 1 else f"{s[0]:.2f}" for s in stats)  # one seed: no SEM
        secs = [float((r.get("discovery") or {}).get("seconds", {}).get("total", 0.0)) for r in recs]
        lines.append(f"| {variant} | {corruption} | {rate:g} | {scorer} | {size[0]:.0f} | {prec} | {rec_} | "
                     f"{np.mean(secs):.1f} | {len(recs)} |")
    return "\n".join(lines) + "\n"


#: The stress-test columns of a grid run with ``verify=[...]``: (metric before, metric after the stress, header).
STRESS_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("healed", "relearn_healed", "healed → relearned"),
    ("healed", "recalibrate_healed", "healed → recalibrated"),
    ("attack_success", "relearn_attack_success", "attack success → relearned"),
    ("attack_success", "recalibrate_attack_success", "attack success → recalibrated"),
    ("forget_accuracy", "views_fit", "fit on D_f → its views"),
)


def has_stress_tests(records: Iterable[Mapping[str, Any]]) -> bool:
    return any(is_ok(r) and any(k in r["metrics"] for _, k, _ in STRESS_COLUMNS) for r in records)


def stress_table(records: Iterable[Mapping[str, Any]]) -> str:
    """Per corruption, method and discovery rate: each metric before and after each stress test (means over
    seeds), for the columns any record of the corruption has."""
    groups: dict[tuple[str, str, float], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if is_ok(r):
            c = r["cell"]
            groups[(c["corruption"], c["method"], float(c["discovery_rate"]))].append(r)
    out = []
    for corruption in sorted({k[0] for k in groups}):
        keys = sorted(k for k in groups if k[0] == corruption)
        columns = [col for col in STRESS_COLUMNS
                   if any(metric_value(r, col[1]) is not None for k in keys for r in groups[k])]
        if not columns:
            continue
        out += [f"**{corruption}**", "", "| method | rate | " + " | ".join(h for _, _, h in columns) + " |",
                "|---|---:|" + "---:|" * len(columns)]
        for key in keys:
            cells = []
            for before, after, _ in columns:
                pair = [mean_sem([v for r in groups[key] if (v := metric_value(r, m)) is not None])[0]
                        for m in (before, after)]
                cells.append(" → ".join("–" if math.isnan(v) else f"{v:.1f}" for v in pair))
            out.append(f"| {method_label(key[1])} | {key[2]:g} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
