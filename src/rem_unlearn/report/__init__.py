"""Turn benchmark records into a report folder: CSV, markdown summary, heatmaps, index.html."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from .heatmaps import plot_heatmaps, plot_wall_time
from .html import write_index
from .records import folder_grid, load_records
from .tables import (
    catastrophic_cells,
    cell_table,
    detected_label,
    discovery_table,
    has_stress_tests,
    is_detected,
    is_ok,
    leaderboard,
    main_table,
    markdown_table,
    method_label,
    records_to_rows,
    stress_table,
    summary,
    write_csv,
)

__all__ = [
    "build_report",
    "load_records",
    "records_to_rows",
    "write_csv",
    "summary",
    "markdown_table",
    "cell_table",
    "leaderboard",
    "catastrophic_cells",
    "discovery_table",
    "plot_heatmaps",
    "plot_wall_time",
    "write_index",
]

log = logging.getLogger(__name__)


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-") or "na"


def _cell_text(cell: dict[str, Any]) -> str:
    return (f"{cell.get('dataset')}/{cell.get('variant')} {cell.get('corruption')} "
            f"seed {cell.get('seed')} rate {cell.get('discovery_rate')}")


def _grid_heading(results_dir: Path) -> str:
    """"<folder> (experiment <name>)": the grid a leaderboard ranks, from the folder's grid.json."""
    saved = folder_grid(results_dir) or {}
    experiment = (saved.get("grid") or {}).get("experiment", "unknown")
    return f"{results_dir.resolve().name} (experiment {experiment})"


def build_report(
    records: list[dict[str, Any]], out_dir: str | Path, title: str = "rem-unlearn benchmark",
    results_dir: str | Path | None = None,
) -> dict[str, Path]:
    """Write the full report into ``out_dir`` (``results_dir``: the folder the records and grid.json come
    from, default ``out_dir``); returns ``{file stem: path}`` of what was written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"results": write_csv(records_to_rows(records), out / "results.csv")}
    detected = [r for r in records if is_detected(r)]
    records = [r for r in records if not is_detected(r)]  # the uniform draws: every table and heatmap below

    groups = summary(records)
    tables_md: dict[str, str] = {}
    settings = (folder_grid(Path(results_dir or out)) or {}).get("settings")  # tuned or published, and how
    md = [f"# {title}", "", *([f"**Method settings.** {settings}", ""] if settings else [])]
    if len({variant for _, variant in groups}) > 1:  # both pre-training variants: the paper's main table
        for dataset, table in main_table(records).items():
            heading = f"{dataset}: every method, as the paper's main table names them"
            tables_md[heading] = table
            md += [f"## {heading}", "", table]
    for (dataset, variant), group in groups.items():
        heading = f"{dataset} / {variant}"
        tables_md[heading] = markdown_table(group)
        md += [f"## {heading}", "", tables_md[heading]]

    margin = 10.0
    for metric, heading in (("score", f"Catastrophic cells (score < trained score − {margin:g})"),
                            ("utility", f"Utility collapsed (utility < trained utility − {margin:g} points)")):
        md += [f"## {heading}", ""]
        for method, cells in sorted(catastrophic_cells(records, margin=margin, metric=metric).items()):
            md.append(f"- **{method_label(method)}**: {len(cells)} cell(s)")
            md += [f"  - {_cell_text(c)}: {metric} {c['value']:.2f} vs trained {c['trained_value']:.2f}"
                   for c in cells]
    if has_stress_tests(records):
        heading = "Stress tests (verify): does the repair survive relearning, recalibration, shifted views?"
        tables_md[heading] = stress_table(records)
        md += ["", f"## {heading}", "", tables_md[heading]]
    discovery_figures: list[Path] = []
    if detected:
        paths.update(_discovery_section(records, detected, out, md, tables_md, discovery_figures))
    failed = [r for r in records + detected if r.get("status") != "ok"]
    md += ["", "## Failed cells", "", f"{len(failed)} failed cell(s)."]
    md += [f"- {(r.get('cell') or {}).get('method')}: {_cell_text(r.get('cell') or {})}" for r in failed]
    paths["summary"] = out / "summary.md"
    atomic_write_text(paths["summary"], "\n".join(md) + "\n")
    paths["leaderboard"] = out / "leaderboard.md"
    heading = _grid_heading(Path(results_dir or out))
    atomic_write_text(paths["leaderboard"], f"# {title}: leaderboard\n\nMethods ranked by mean score over the grid's "
                      "cells (mean ± SEM); each row names the command, package version and commit of its records."
                      + (f" {settings}" if settings else "") + "\n\n" + leaderboard(records, heading))
    paths["cells"] = out / "cells.md"
    atomic_write_text(paths["cells"], f"# {title}: every cell\n\n" + cell_table(records))

    figures: list[Path] = []
    stressed = [m for m in ("relearn_attack_success", "relearn_healed")
                if any(is_ok(r) and r["metrics"].get(m) is not None for r in records)]
    for dataset, variant in groups:
        for metric in ("score", "healed", *stressed):
            stem = f"heatmap_{metric}_{_slug(dataset)}_{_slug(variant)}"
            paths[stem] = plot_heatmaps(records, out / f"{stem}.png", metric=metric, dataset=dataset,
                                        variant=variant, lower_is_better=metric.endswith("attack_success"))
            figures.append(paths[stem])
    paths["wall_time"] = plot_wall_time(records, out / "wall_time.png")
    figures += [paths["wall_time"], *discovery_figures]
    paths["index"] = write_index(out, figures, tables_md, title, note=f"Method settings. {settings}" if settings else "")
    return paths


def _discovery_section(uniform: list[dict[str, Any]], detected: list[dict[str, Any]], out: Path, md: list[str],
                       tables_md: dict[str, str], figures: list[Path]) -> dict[str, Path]:
    """Detected cells: the precision/recall table of their forget sets, and a score heatmap per model.

    In the heatmap a detected cell's panel is ``method <- scorer`` next to the same
    method with the known ids alone, so a column reads "known r, detected with S, then M".
    """
    heading = "Discovery: the known ids extended by a scorer"
    tables_md[heading] = discovery_table(uniform + detected)
    md += [f"## {heading}", "", tables_md[heading]]
    methods = {(r.get("cell") or {}).get("method") for r in detected}
    relabelled = [r for r in uniform if (r.get("cell") or {}).get("method") in methods | {"none", "etd"}]
    relabelled += [{**r, "cell": {**r["cell"], "method": detected_label(r)}} for r in detected]
    paths: dict[str, Path] = {}
    for dataset, variant in sorted({((r.get("cell") or {}).get("dataset"), (r.get("cell") or {}).get("variant"))
                                    for r in detected}, key=lambda k: tuple(map(str, k))):
        stem = f"heatmap_detected_score_{_slug(dataset)}_{_slug(variant)}"
        paths[stem] = plot_heatmaps(relabelled, out / f"{stem}.png", metric="score", dataset=dataset, variant=variant)
        figures.append(paths[stem])
    return paths
