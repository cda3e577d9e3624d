"""End-to-end check of the report package on synthetic records (fast, no training)."""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
import sys
from pathlib import Path

try:
    import rem_unlearn.report  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rem_unlearn.report import build_report, catastrophic_cells, load_records  # noqa: E402

CORRUPTIONS = ("poison", "interclass", "random")
RATES = (0.25, 1.0)
SEEDS = (0, 1)
BAD_CELL = ("ga", "interclass", 1, 0.25)  # (method, corruption, seed, rate) scoring far below trained
COLLAPSED_CELL = ("rem", "poison", 0, 1.0)  # its utility falls 30 points below the trained model's


def _record(method: str, corruption: str, seed: int, rate: float, status: str = "ok") -> dict:
    base = {"none": 60.0, "rem": 85.0, "ga": 70.0}[method]
    base += 3.0 * CORRUPTIONS.index(corruption) + 1.7 * seed
    if method != "none":  # the trained model's metrics are identical across rates
        base += 4.0 * rate
    if (method, corruption, seed, rate) == BAD_CELL:
        base = 20.0
    utility = 90.0 - (5.0 if method == "ga" else 0.0) + 0.5 * seed
    if (method, corruption, seed, rate) == COLLAPSED_CELL:
        utility = 60.0
    metrics = {
        "healed": base, "healed_test": base - 1, "utility": utility,
        "score": utility * base / 100, "attack_success": 100 - base,
        "forget_accuracy": 10.0, "retain_accuracy": 95.0, "test_accuracy": utility,
        "healed_official": base if corruption == "poison" else None,
        "attack_success_official": 100 - base if corruption == "poison" else None,
    }
    return {
        "schema": 1, "key": f"{method}-{corruption}-{seed}-{rate}", "status": status,
        "error": None if status == "ok" else "Traceback...\nRuntimeError: boom",
        "cell": {"dataset": "fashion-mnist", "variant": "capacity", "corruption": corruption,
                 "seed": seed, "discovery_rate": rate, "method": method},
        "metrics": metrics if status == "ok" else None,
        "wall_time_s": (5.0 if method == "ga" else 40.0 + seed) if status == "ok" else None,
        "config": {}, "versions": {}, "host": "test",
    }


def _records() -> list[dict]:
    recs = [_record(m, c, s, r) for m in ("none", "rem", "ga") for c in CORRUPTIONS for s in SEEDS for r in RATES]
    recs.append(_record("rem", "random", 2, 0.25, status="failed"))
    return recs


def _fmt(values: list[float]) -> str:
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sem:.2f}"


def test_build_report(tmp_path: Path) -> None:
    records = _records()
    paths = build_report(records, tmp_path / "report")
    expected = {"results.csv", "summary.md", "index.html", "wall_time.png",
                "heatmap_score_fashion-mnist_capacity.png", "heatmap_healed_fashion-mnist_capacity.png"}
    assert expected <= {p.name for p in paths.values()}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0, p

    with open(paths["results"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(records)
    assert sum(r["status"] == "failed" for r in rows) == 1

    md = paths["summary"].read_text()
    rem_ok = [r for r in records if r["cell"]["method"] == "rem" and r["status"] == "ok"]
    rem_row = next(line for line in md.splitlines() if line.startswith("| rem |"))
    cells = [c.strip() for c in rem_row.strip("|").split("|")]
    assert cells[1].strip("*") == _fmt([r["metrics"]["healed"] for r in rem_ok])
    assert cells[3].strip("*") == _fmt([r["metrics"]["score"] for r in rem_ok])
    assert cells[4] == _fmt([r["wall_time_s"] for r in rem_ok])
    assert cells[5] == str(len(rem_ok))
    # rem has the best healed and score among methods: bold; ga's are not.
    assert cells[1].startswith("**") and cells[3].startswith("**")
    ga_row = next(line for line in md.splitlines() if line.startswith("| ga |"))
    assert "**" not in ga_row.split("|")[3]
    assert "| Trained (none) |" in md
    assert md.index("| rem |") < md.index("| ga |") < md.index("| Trained (none) |")  # by score
    assert "1 failed cell(s)." in md

    html = paths["index"].read_text()
    assert "<b>" in html and "<table>" in html and 'href="results.csv"' in html
    assert 'src="heatmap_score_fashion-mnist_capacity.png"' in html


def test_cell_table_matches_records() -> None:
    from rem_unlearn.report import cell_table

    records = _records()
    md = cell_table(records, rates=[1.0], methods=["none", "rem"])
    lines = [ln for ln in md.splitlines()[2:]]
    assert lines and all(("| rem |" in ln or "| Trained (none) |" in ln) for ln in lines)
    assert lines[0].startswith("| Trained (none) |")  # the methods order is kept
    row = next(ln for ln in lines if ln.startswith("| rem |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    want = [r for r in records if r["status"] == "ok" and r["cell"]["method"] == "rem"
            and r["cell"]["corruption"] == cells[2] and r["cell"]["discovery_rate"] == 1.0]
    want_score = _fmt([r["metrics"]["score"] for r in want])
    assert cells[6] == (want_score.split(" ± ")[0] if len(want) == 1 else want_score) and cells[8] == str(len(want))


def test_catastrophic_cells() -> None:
    cat = catastrophic_cells(_records(), margin=10.0)
    assert cat["rem"] == []
    bad = [(c["method"], c["corruption"], c["seed"], c["discovery_rate"]) for c in cat["ga"]]
    assert bad == [BAD_CELL]
    assert cat["ga"][0]["value"] < cat["ga"][0]["trained_value"] - 10


def test_report_flags_cells_whose_utility_collapsed(tmp_path: Path) -> None:
    collapsed = catastrophic_cells(_records(), margin=10.0, metric="utility")
    assert [(c["method"], c["corruption"], c["seed"], c["discovery_rate"]) for c in collapsed["rem"]] == [
        COLLAPSED_CELL]
    assert collapsed["ga"] == []  # 5 points below the trained model: not flagged
    summary = (tmp_path / "summary.md")
    build_report(_records(), tmp_path)
    text = summary.read_text()
    section = text[text.index("## Utility collapsed"):]
    assert "**rem**: 1 cell(s)" in section and "utility 60.00 vs trained 90.00" in section


def test_load_records_skips_corrupt(tmp_path: Path, caplog) -> None:
    rec_dir = tmp_path / "records"
    rec_dir.mkdir()
    good = _records()[:3]
    for r in good:
        (rec_dir / f"{r['key']}.json").write_text(json.dumps(r))
    (rec_dir / "broken.json").write_text('{"schema": 1, "cell": ')
    (rec_dir / "foreign.json").write_text('{"hello": "world"}')
    with caplog.at_level(logging.WARNING, logger="rem_unlearn.report"):
        loaded = load_records(tmp_path)
    assert sorted(r["key"] for r in loaded) == sorted(r["key"] for r in good)
    assert "broken.json" in caplog.text and "foreign.json" in caplog.text
    # Once the folder names its grid, only that grid's records count (e.g. after `bench --force`).
    (tmp_path / "grid.json").write_text(json.dumps({"bench_format": 2, "grid_id": "g1", "grid": {}}))
    for r, gid in zip(good, ("g1", "g0", "g1")):
        (rec_dir / f"{r['key']}.json").write_text(json.dumps({**r, "grid_id": gid, "bench_format": 2}))
    assert sorted(r["key"] for r in load_records(tmp_path)) == sorted([good[0]["key"], good[2]["key"]])


def test_index_references_resolve_from_the_page(tmp_path: Path, monkeypatch) -> None:
    """Every <img src> and <a href> of index.html names a file next to the page, however the report
    folder was given (a path relative to the working directory) and wherever it is moved afterwards."""
    import html.parser
    import shutil
    from urllib.parse import unquote

    class Refs(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.refs: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            self.refs += [v for k, v in attrs if k in ("src", "href") and v]

    monkeypatch.chdir(tmp_path)
    build_report(_records(), Path("results") / "default")  # relative, as `make bench` gives it
    moved = tmp_path / "elsewhere" / "report"
    shutil.move(str(tmp_path / "results" / "default"), moved)
    parser = Refs()
    parser.feed((moved / "index.html").read_text())
    assert len([r for r in parser.refs if r.endswith(".png")]) >= 3
    for ref in parser.refs:
        assert (moved / unquote(ref)).is_file(), ref


def test_heatmap_colours_separate_the_scores_a_reader_compares() -> None:
    """53 and 73 points above the trained model used to be the same saturated blue (the scale clipped at 50)."""
    from rem_unlearn.report.heatmaps import colour_scale

    cmap, norm = colour_scale()
    colours = [cmap(norm(v)) for v in (53.0, 73.0, 100.0)]
    assert max(abs(a - b) for a, b in zip(colours[0][:3], colours[1][:3])) > 0.05
    assert len(set(colours)) == 3  # none of them clipped to one colour


def test_main_table_names_methods_as_the_paper() -> None:
    from rem_unlearn.report.tables import main_table

    recs = _records()
    etd = [{**r, "cell": {**r["cell"], "variant": "etd", "method": {"none": "etd"}.get(r["cell"]["method"], m)}}
           for r in recs if r["status"] == "ok" for m in [{"rem": "rem", "ga": "npo"}.get(r["cell"]["method"], "x")]]
    table = main_table(recs + etd)["fashion-mnist"]
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert set(rows) == {"REM", "REM (ETD)", "GA", "NPO (ETD)", "Trained", "ETD"}
    assert "**" not in next(line for line in table.splitlines() if line.startswith("| ETD |"))  # a reference


def test_leaderboard_ranks_methods_and_names_their_provenance(tmp_path: Path) -> None:
    records = _records()
    for r in records:
        if r["cell"]["method"] != "ga":  # ga's records predate command/commit: "not recorded"
            r.update(command="rem-unlearn bench --preset default", commit="a" * 40,
                     versions={"rem_unlearn": "0.1.0"})
    (tmp_path / "grid.json").write_text(json.dumps({"grid": {"experiment": "fashion-mnist"}}))
    paths = build_report(records, tmp_path / "report", results_dir=tmp_path)
    text = paths["leaderboard"].read_text()
    assert f"## {tmp_path.name} (experiment fashion-mnist)" in text
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Rank")]
    assert [row[1] for row in rows] == ["rem", "ga", "Trained (none)"]  # by mean score
    assert [row[0] for row in rows] == ["1", "2", "3"]
    rem_ok = [r for r in records if r["cell"]["method"] == "rem" and r["status"] == "ok"]
    rem = rows[0]
    assert rem[2] == "capacity" and rem[3] == _fmt([r["metrics"]["score"] for r in rem_ok])
    assert rem[4] == _fmt([r["metrics"]["healed"] for r in rem_ok])
    assert rem[5] == _fmt([r["metrics"]["utility"] for r in rem_ok])
    assert rem[6] == _fmt([r["wall_time_s"] for r in rem_ok]) and rem[7] == str(len(rem_ok))
    assert rem[8:] == ["`rem-unlearn bench --preset default`", "0.1.0", "`aaaaaaaaaaaa`"]
    assert rows[1][8:] == ["`not recorded`", "not recorded", "`not recorded`"]
    assert 'href="leaderboard.md"' in paths["index"].read_text()


def test_committed_faithful_records_rebuild_the_main_table(tmp_path: Path) -> None:
    """The archived faithful records (seeds 0, 1 and 2, an earlier REM): the report rebuilds the paper's main table
    from them without training, with every row of the preset and the numbers docs/benchmark.md quotes."""
    import shutil

    from rem_unlearn.report.tables import main_table

    committed = Path(__file__).resolve().parents[1] / "research" / "records" / "archive" / "faithful-2026-11-29"
    folder = tmp_path / "faithful"
    shutil.copytree(committed / "records", folder / "records")
    shutil.copy(committed / "grid.json", folder / "grid.json")
    records = load_records(folder)
    assert len(records) == 324 and all(r["status"] == "ok" for r in records)
    assert sorted({r["cell"]["seed"] for r in records}) == [0, 1, 2]
    table = main_table(records)["fashion-mnist"]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {"REM", "REM (ETD)", "NPO (ETD)", "SCRUB (ETD)", "BadT (ETD)", "Retrained", "Potion",
                         "ETD", "Trained"}
    assert "69.13 ± 1.01" in rows["REM"] and "68.25 ± 1.31" in rows["NPO (ETD)"]  # as research/notes/results.md says
    build_report(records, folder)
    assert (folder / "index.html").exists()
