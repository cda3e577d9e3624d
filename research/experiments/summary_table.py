"""The report's summary table (mean ± SEM of healed, utility, score and wall time per method) over the records
of one or more results folders of one grid (a cell in several folders counts once). ``FOLDER@m1,m2`` takes only
those methods' records from a folder (the trained model and Retrain, which have nothing to tune, from a
published folder beside tuned ones).

    .venv/bin/python research/experiments/summary_table.py research/records/default-published \\
        research/records/default-published-rest
"""

from __future__ import annotations

import argparse

from rem_unlearn.report import load_records
from rem_unlearn.report.tables import leaderboard, markdown_table, summary


def folder_records(spec: str) -> list[dict]:
    folder, _, methods = spec.partition("@")
    records = load_records(folder)
    return [r for r in records if r["cell"]["method"] in methods.split(",")] if methods else records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", metavar="FOLDER[@METHODS]")
    p.add_argument("--variant", help="only the cells of this model variant (capacity, etd)")
    p.add_argument("--seeds", type=lambda t: [int(x) for x in t.split(",")],
                   help="only the cells of these seeds (comma-separated): the seeds a table reports in full")
    p.add_argument("--leaderboard", metavar="HEADING", help="print the report's leaderboard under this heading")
    a = p.parse_args()
    records = list({r["key"]: r for spec in a.folders for r in folder_records(spec)
                    if a.variant in (None, r["cell"]["variant"])
                    and (a.seeds is None or r["cell"]["seed"] in a.seeds)}.values())  # a cell once
    if a.leaderboard:
        print(leaderboard(records, a.leaderboard).strip())
        return
    for (dataset, variant), group in summary(records).items():
        if len(summary(records)) > 1:
            print(f"\n{dataset} / {variant}:\n")
        print(markdown_table(group))


if __name__ == "__main__":
    main()
