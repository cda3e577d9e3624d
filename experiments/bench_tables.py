"""The per-cell tables of docs/results.md, from one benchmark results folder.

    .venv/bin/python experiments/bench_tables.py results/default
"""

from __future__ import annotations

import argparse

from rem_unlearn.report import cell_table, load_records
from rem_unlearn.report.tables import catastrophic_cells


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir")
    a = p.parse_args()
    records = load_records(a.results_dir)
    print("## REM vs the trained model (capacity-0.5 ResNet-9)\n")
    print(cell_table(records, rates=[0.1, 0.5, 1.0], methods=["none", "rem"], variant="capacity"))
    print("## REM on the ETD model\n")
    print(cell_table(records, rates=[0.1, 0.5, 1.0], methods=["etd", "rem"], variant="etd"))
    methods = sorted({r["cell"]["method"] for r in records if r["cell"]["variant"] == "capacity"},
                     key=lambda m: (m != "none", m != "rem", m))
    print("## Every method at discovery 0.1 and 1.0 (capacity-0.5 ResNet-9)\n")
    print(cell_table(records, rates=[0.1, 1.0], methods=methods, variant="capacity"))
    print("## Catastrophic cells (score more than 10 below the trained model)\n")
    for method, cells in sorted(catastrophic_cells(records).items()):
        where = ", ".join(f"{c['corruption']} {c['discovery_rate']:g}" for c in cells)
        print(f"- {method}: {len(cells)}" + (f" ({where})" if cells else ""))


if __name__ == "__main__":
    main()
