"""Committed benchmark records must come from the code as it is: each record's commit is clean, and its method's
code at that commit is the code as it is now (the files' contents: a change undone, or a change elsewhere, leaves
the records valid; any difference in those files makes them stale).

A method's code is its own module (found through the registry), the method and discovery modules it imports
(its parent class's, shared helpers, the scorers of a detect-then-unlearn method; followed transitively), and the
modules every method runs through: the method template and its shared parts (methods/base.py, common.py,
template.py) and the training loop (training.py).  An edit listed in REVIEWED, with why it changes no
committed record, is forgiven.  Records under research/records/archive/ are kept as history, are exempt, and
are quoted only as made with earlier code.

    .venv/bin/python scripts/check_records.py            # lists stale records; exit 1 if any
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "research" / "records"
SHARED = ("src/rem_unlearn/methods/base.py", "src/rem_unlearn/methods/common.py",
          "src/rem_unlearn/methods/template.py", "src/rem_unlearn/training.py")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@functools.cache
def method_sources(method: str) -> tuple[str, ...]:
    from rem_unlearn.methods.registry import get_method

    module = Path(inspect.getfile(get_method(method))).resolve()
    return tuple(dict.fromkeys([*(str(p.relative_to(ROOT)) for p in imported_modules(module)), *SHARED]))


PACKAGES = ("methods", "discovery")  # the imports that are followed
RELATIVE = re.compile(r"^\s*from (\.+)([\w.]*) import ([\w, ()]+)", re.M)


def imported_modules(module: Path) -> list[Path]:
    """``module`` and the modules of PACKAGES it imports relatively (at any depth), transitively."""
    src = ROOT / "src" / "rem_unlearn"
    seen: list[Path] = []
    todo = [module]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        for dots, name, names in RELATIVE.findall(path.read_text()):
            base = path.parent
            for _ in range(len(dots) - 1):
                base = base.parent
            target = base.joinpath(*name.split(".")) if name else base
            candidates = [target.with_suffix(".py"), target / "__init__.py"]
            if not name:  # "from . import a, b": modules of the package
                candidates = [base / f"{n.strip(' ()')}.py" for n in names.split(",") if n.strip(" ()")]
            for c in candidates:
                if c.is_file() and c.resolve().parent.relative_to(src).parts[:1] in [(p,) for p in PACKAGES]:
                    todo.append(c.resolve())
            if path.parent == src / "discovery":  # its __init__ registers every scorer by name: all of them count
                todo.extend(sorted((src / "discovery").glob("*.py")))
    return seen


#: Reviewed edits of a shared file that leave every committed record's result as it was: (file, content hash
#: before) -> (content hash after, why).  Only that exact edit is forgiven; any other makes the records stale.
REVIEWED = {
    ("src/rem_unlearn/training.py", "0497776c9d34f0d4f22b9e3291f0740e5794638f"): (
        "76c692c129b23e8ffb6c8875740075feacf02de9",
        "runtime.precision=auto became fp32 on a CPU without native bf16 (AVX512-BF16 or AMX), where it was "
        "emulated bf16; on a CPU with it, auto is bf16 as before, and every committed record ran bf16 on such a "
        "CPU: each trained 200,000 images in at most 578 s (train_seconds), 346 img/s or more, where emulated bf16 "
        "trains 48 img/s on both cores (research/speed/throughput.py on an AVX2-only CPU)"),
}


def blob(rev: str, path: str) -> str:
    """The content hash of ``path`` at ``rev``, or in the working tree when ``rev`` is empty."""
    done = git("rev-parse", f"{rev}:{path}") if rev else git("hash-object", path)
    return done.stdout.strip()


def reviewed(commit: str, path: str) -> bool:
    """Whether ``path`` went from its content at ``commit`` to the working tree's by reviewed edits only."""
    content, now = blob(commit, path), blob("", path)
    while (path, content) in REVIEWED and content != now:
        content = REVIEWED[path, content][0]
    return content == now


@functools.cache
def changed_since(commit: str, method: str) -> tuple[str, ...]:
    """The method's code files whose content differs between ``commit`` and the working tree, but for the
    reviewed edits."""
    done = git("diff", "--name-only", commit, "--", *method_sources(method))
    if done.returncode != 0:
        return ("(the commit is not in this repository)",)
    return tuple(path for path in done.stdout.split() if not reviewed(commit, path))


def stale(record: dict) -> str | None:
    """Why ``record`` is not from the code as it is, or None."""
    commit, method = record.get("commit", ""), record["cell"]["method"]
    if not commit or commit.endswith("-dirty"):
        return f"not stamped with a clean commit ({commit or 'none'})"
    changed = changed_since(commit, method)
    if changed:
        return f"made at {commit[:12]}; {method}'s code has changed since: {', '.join(changed)}"
    return None


def bench_records(root: Path = RECORDS) -> list[Path]:
    archive = root / "archive"
    return sorted(p for p in root.glob("**/records/*.json") if archive not in p.parents)


def problems(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        why = stale(json.loads(path.read_text()))
        if why:
            out.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {why}")
    return out


def main() -> None:
    found = problems(bench_records())
    print("\n".join(found) or f"{len(bench_records())} committed records, all from the code as it is")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
