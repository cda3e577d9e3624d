"""``rem-unlearn bench``: run a grid preset (or a grid file) into a results folder, resumably."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .grid import GRID_PRESETS

DESCRIPTION = """\
Map unlearning methods over the discovery x regularity space.

Every cell (method x corruption x discovery rate x seed x variant) writes one
record to RESULTS/records/ as soon as it is done; rerunning the same command
skips finished cells, so an interrupted sweep resumes where it stopped.  The
report (results.csv, summary.md, heatmaps, index.html) is rebuilt in RESULTS
at the end.

presets: smoke (tiny, about 30 s on 2 cores), quick (a first look),
default (the embedded Fashion-MNIST benchmark), fashion-mnist-vit (the same
with a small ViT), paper-cifar10-resnet9 (alias: paper) and paper-svhn-vit
(the paper's two setups, for GPUs), and their CPU-sized twins
paper-cifar10-resnet9-cpu and paper-svhn-vit-cpu (data under data.root).

Grid keys for a --config file or key=value overrides:
experiment, experiment_overrides.<section>.<key>, variants, variant_methods.<variant>,
corruptions, discovery_rates, methods, method_overrides.<method>.<key>,
unlearn.<key>, seeds, device, tuned (a `rem-unlearn tune` file or a shipped
tuning such as default; "" runs the published settings), discovery_modes (uniform: the known ids are
the forget set; detected: a scorer extends them first), scorers,
scorer_overrides.<scorer>.<key>.

examples:
  rem-unlearn bench --preset smoke
  rem-unlearn bench --preset quick methods=[rem,none] unlearn.epochs=3
  rem-unlearn bench --preset quick methods=[rem,none] discovery_modes=[uniform,detected] scorers=[auto]
  rem-unlearn bench --preset paper --engine ray --ray-address auto --device cuda \\
      experiment_overrides.data.root=/shared/data
"""


def add_bench_parser(subparsers, func, parents=()) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="run the benchmark grid (resumable; local or Ray)", parents=list(parents),
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=list(GRID_PRESETS),
                   help="grid preset (default: %(default)s)")
    p.add_argument("--config", help="TOML/YAML/JSON grid file applied onto the preset")
    p.add_argument("--results", help="results folder (default: results/<preset>)")
    p.add_argument("--engine", default="local", choices=("local", "ray", "submitit"),
                   help="where cells run (default: %(default)s; submitit: SLURM job arrays, rem-unlearn[slurm])")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel cells and pre-trainings (local default 1; on a CPU, one per core is fastest; "
                        "ray default: cores / threads)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per cell (default: cores / workers)")
    p.add_argument("--ray-address", help="Ray cluster to join, e.g. auto or ray://host:10001 "
                   "(default: start a local instance)")
    p.add_argument("--submitit-folder", help="submitit's job files and logs (default: RESULTS/submitit)")
    p.add_argument("--cluster", choices=("slurm", "local"), default="slurm",
                   help="submitit's cluster: slurm, or local to try a sweep on this machine (default: %(default)s)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="a SLURM parameter for every job, e.g. --slurm partition=gpu --slurm time=120 (repeatable)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="compute device (grid key device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-cell lines")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells whose record is a failure")
    p.add_argument("--force", action="store_true",
                   help="reuse a results folder made by another grid or format (its other records are ignored)")
    from ..tracking import add_tracking_args

    add_tracking_args(p, "RESULTS/runs (tensorboard) or RESULTS/mlflow.db (mlflow)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="grid overrides, e.g. methods=[rem,ga] discovery_rates=[0.5,1.0] unlearn.epochs=3")
    p.set_defaults(func=func)
    return p


def slurm_parameters(pairs: list[str]) -> dict[str, Any]:
    """``--slurm key=value`` flags as submitit parameters (numbers as numbers)."""
    from ..config import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--slurm {pair!r}: expected KEY=VALUE, e.g. partition=gpu")
        out[key.strip()] = int(value) if value.strip().isdigit() else value
    return out


def run_bench(args) -> int:
    """Exit status 0, or 1 when a cell failed (its traceback is in its record); user errors raise."""
    from .grid import load_grid
    from .runner import run_grid

    overrides = list(args.overrides or [])
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    grid = load_grid(args.preset, args.config, overrides)
    results = Path(args.results or Path("results") / args.preset)
    start = time.perf_counter()
    options = {}
    if args.engine == "submitit":
        options = {"submitit_folder": args.submitit_folder or results / "submitit", "submitit_cluster": args.cluster,
                   "slurm": slurm_parameters(args.slurm)}
    records = run_grid(grid, results, engine=args.engine, workers=args.workers, ray_address=args.ray_address,
                       quiet=args.quiet, retry_failed=args.retry_failed, force=args.force,
                       threads=getattr(args, "threads", None), command=getattr(args, "command_line", None),
                       track=getattr(args, "log", None), track_dir=getattr(args, "log_dir", None),
                       engine_options=options)
    elapsed = time.perf_counter() - start
    failed = [r for r in records if r.get("status") != "ok"]
    print(f"bench: {len(records)} records ({len(failed)} failed) in {elapsed:.1f}s")
    print(f"report: {results / 'index.html'}")
    if failed:
        print(f"{len(failed)} cell(s) failed; their tracebacks are in {results / 'records'} "
              "(rerun with --retry-failed to try them again)", file=sys.stderr)
    return 1 if failed else 0


TUNE_DESCRIPTION = """\
Tune every method of a grid preset equally and without the test split.

Each method tries the same number of settings from its own search space
(`rem-unlearn methods` lists them; trial 1 is the published setting) on dev
seeds that no reported cell uses, scored on validation images carved from the
training split.  Per method and corruption kind the best mean validation
score wins.  The file it writes holds every trial and the choice; run a grid
with it by `rem-unlearn bench ... tuned=FILE`.  Trials run as bench grids in
OUT-trials/ and resume when rerun.

examples:
  rem-unlearn tune --preset default --out tuning.json --workers 2
  rem-unlearn tune --preset quick methods=[rem,ga] --trials 4 --out quick.json
"""


def add_tune_parser(subparsers, func, parents=()) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="equal, test-free tuning of every method of a grid",
                              parents=list(parents), description=TUNE_DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=list(GRID_PRESETS), help="grid preset (default: %(default)s)")
    p.add_argument("--config", help="TOML/YAML/JSON grid file applied onto the preset")
    p.add_argument("--out", required=True, help="the tuning file to write (.json)")
    p.add_argument("--trials", type=int, default=6, help="settings tried per method (default: %(default)s)")
    p.add_argument("--dev-seeds", default="100", help="comma-separated dev seeds (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="parallel cells (see bench)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per cell (see bench)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-cell lines")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="grid overrides, e.g. methods=[rem,ga]")
    p.set_defaults(func=func)
    return p


def run_tune(args) -> int:
    from ..config import ConfigError
    from ..files import check_output
    from .tune import tune

    if args.trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {args.trials}")
    try:
        seeds = [int(s) for s in args.dev_seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--dev-seeds must be comma-separated integers, got {args.dev_seeds!r}") from None
    from .tuning_file import load_tuning

    if Path(args.out).is_file():
        load_tuning(args.out)  # a rerun resumes a tuning; anything else there is refused
    out = check_output(args.out, "--out", suffixes=(".json",), force=Path(args.out).is_file())
    result = tune(args.preset, args.config, list(args.overrides or []), trials=args.trials, dev_seeds=seeds, out=out,
                  workers=args.workers, threads=args.threads, quiet=args.quiet)
    for method, entry in result["methods"].items():
        chosen = ", ".join(f"{c}: trial {v['trial']} {v['settings'] or '(published)'} ({v['validation_score']:.1f})"
                           for c, v in entry["chosen"].items())
        print(f"{method}: {len(entry['trials'])} trials; {chosen}")
    print(f"tune: wrote {out}")
    return 0
