"""Result tables in the docs come from committed records, never from typing: one script makes them all.

A generated block in README.md or docs/*.md is

    <!-- generated: .venv/bin/python research/experiments/task_suite.py --table ... -->
    (the command's output)
    <!-- end generated -->

where the command reads committed records only (no training).  This script reruns every block's command
and writes its output into the block, or with ``--check`` lists the blocks whose text differs from what the
records give (exit 1).  tests/test_doc_tables.py runs the check.

    .venv/bin/python scripts/doc_tables.py            # rewrite every generated block
    .venv/bin/python scripts/doc_tables.py --check    # exit 1 if any block drifted from its records
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: (.+?) -->\n)(.*?)(<!-- end generated -->)", re.S)


def documents(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def output(command: str, root: Path = ROOT) -> str:
    """What ``command`` prints, run from ``root`` with this interpreter."""
    args = shlex.split(command)
    if args[0].endswith("python"):
        args[0] = sys.executable
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if done.returncode != 0:
        raise SystemExit(f"`{command}` failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip() + "\n"


def regenerate(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every block rewritten, and the commands whose block differed."""
    drifted = []
    commands = list(dict.fromkeys(m.group(2) for m in BLOCK.finditer(text)))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # each command is its own process
        fresh_of = dict(zip(commands, pool.map(lambda command: output(command, root), commands)))

    def fill(m: re.Match) -> str:
        fresh = fresh_of[m.group(2)]
        if fresh != m.group(3):
            drifted.append(m.group(2))
        return m.group(1) + fresh + m.group(4)

    return BLOCK.sub(fill, text), drifted


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only list the blocks that drifted; exit 1 if any")
    a = p.parse_args()
    found = []
    for path in documents():
        text = path.read_text()
        fresh, drifted = regenerate(text)
        found += [f"{path.relative_to(ROOT)}: {command}" for command in drifted]
        if drifted and not a.check:
            write_atomic(path, fresh)
    verb = "drifted from its records" if a.check else "rewritten"
    print("\n".join(f"{line} ({verb})" for line in found) or "every generated block matches its records")
    sys.exit(1 if found and a.check else 0)


if __name__ == "__main__":
    main()
