"""The report's summary table (mean ± SEM of healed, utility, score and wall time per method) over the records
of one or more results folders of one grid (a cell in several folders counts once).

    .venv/bin/python research/experiments/summary_table.py research/records/default-published \\
        research/records/default-published-rest
"""

from __future__ import annotations

import argparse

from rem_unlearn.report import load_records
from rem_unlearn.report.tables import leaderboard, markdown_table, summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--leaderboard", metavar="HEADING", help="print the report's leaderboard under this heading")
    a = p.parse_args()
    records = list({r["key"]: r for folder in a.folders for r in load_records(folder)}.values())  # a cell once
    if a.leaderboard:
        print(leaderboard(records, a.leaderboard).strip())
        return
    for (dataset, variant), group in summary(records).items():
        if len(summary(records)) > 1:
            print(f"\n{dataset} / {variant}:\n")
        print(markdown_table(group))


if __name__ == "__main__":
    main()
