"""The result tables of README.md and docs/ are what their committed records give (scripts/doc_tables.py)."""

from __future__ import annotations

from pathlib import Path

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def doc_tables():
    return load_script("doc_tables")


def test_every_generated_table_matches_its_records() -> None:
    tables = doc_tables()
    texts = {path.name: path.read_text() for path in tables.documents()}
    assert sum(len(tables.BLOCK.findall(text)) for text in texts.values()) >= 3
    drifted = {name: tables.regenerate(text)[1] for name, text in texts.items()}
    assert not any(drifted.values()), f"run scripts/doc_tables.py: {drifted}"


def test_a_number_typed_into_a_generated_table_is_caught() -> None:
    tables = doc_tables()
    text = (ROOT / "docs" / "defaults.md").read_text()
    block = tables.BLOCK.search(text)
    planted = text.replace(block.group(3), block.group(3).replace("**58.7**", "**59.7**", 1))
    assert planted != text
    fixed, drifted = tables.regenerate(planted)
    assert drifted == [block.group(2)] and fixed == text
