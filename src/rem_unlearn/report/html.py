"""A dependency-free ``index.html`` tying the report's figures, tables and CSV together."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import quote

from ..files import atomic_write_text

_SEPARATOR = re.compile(r"^\|[\s:|-]+\|$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1400px; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 10px; }
td { text-align: right; } td:first-child { text-align: left; }
th { background: #f0f0f0; }
img { max-width: 100%; border: 1px solid #eee; margin-bottom: 1.5em; }
"""


def _inline(text: str) -> str:
    """Escape a cell, then turn markdown ``**x**`` into ``<b>x</b>``."""
    return _BOLD.sub(r"<b>\1</b>", html.escape(text.strip()))


def _cells(line: str) -> list[str]:
    return line.strip().strip("|").split("|")


def markdown_to_html(md: str) -> str:
    """Convert the simple markdown the report writes: pipe tables, ``#`` headings, bullets, text.

    Not a general markdown parser; it only needs to render :func:`markdown_table` output
    without pulling in a markdown dependency.
    """
    out: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if not table:
            return
        rows = [ln for ln in table if not _SEPARATOR.match(ln.strip())]
        out.append("<table>")
        out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in _cells(rows[0])) + "</tr>")
        for ln in rows[1:]:
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(ln)) + "</tr>")
        out.append("</table>")
        table.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            table.append(s)
            continue
        flush()
        if not s:
            continue
        if s.startswith("#"):
            level = min(len(s) - len(s.lstrip("#")) + 1, 6)  # page title is the only <h1>
            out.append(f"<h{level}>{_inline(s.lstrip('#'))}</h{level}>")
        elif s.startswith(("- ", "* ")):
            out.append(f"<ul><li>{_inline(s[2:])}</li></ul>")
        else:
            out.append(f"<p>{_inline(s)}</p>")
    flush()
    return "\n".join(out)


def _href(target: str | Path, out_dir: Path) -> str:
    """A URL relative to the page's own folder, so the report folder can be moved or served as is.

    ``target`` is a path (relative to the working directory, or absolute) or a bare file name in ``out_dir``.
    """
    p = Path(target)
    if not p.is_absolute() and len(p.parts) == 1:
        p = Path(out_dir) / p
    rel = os.path.relpath(p.resolve(), Path(out_dir).resolve())
    return html.escape(quote(Path(rel).as_posix()))


def write_index(
    out_dir: str | Path,
    figures: Sequence[str | Path],
    tables_md: Mapping[str, str],
    title: str,
    csv_name: str = "results.csv",
    extra_links: Sequence[str] = ("summary.md", "leaderboard.md"),
    note: str = "",
) -> Path:
    """Write ``out_dir/index.html``: ``note`` (a sentence), tables (heading → markdown), then figures, plus links."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = [csv_name, *extra_links]
    body = [
        f"<h1>{html.escape(title)}</h1>",
        "<p>" + " · ".join(f'<a href="{_href(l, out_dir)}">{html.escape(str(l))}</a>' for l in links) + "</p>",
        *([f"<p>{html.escape(note)}</p>"] if note else []),
    ]
    for heading, md in tables_md.items():
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(markdown_to_html(md))
    if figures:
        body.append("<h2>Figures</h2>")
    for fig in figures:
        src = _href(fig, out_dir)
        body.append(f'<figure><img src="{src}" alt="{html.escape(Path(fig).name)}">'
                    f"<figcaption>{html.escape(Path(fig).name)}</figcaption></figure>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    path = out_dir / "index.html"
    atomic_write_text(path, page)
    return path
