"""The documented report fields are the report dataclasses' fields, in their order.

The tables live under a "Report fields" heading, in docs/ (or the README): one
table per report, its row fields by name and its total fields as ``total.<name>``.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from plugnmeet_webhooks.ledger import reports

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^(#+)\s+Report fields\s*$")
ANY_HEADING = re.compile(r"^(#+)\s+(.*?)\s*$")
FIELD_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]*?)\s*\|\s*(.*?)\s*\|\s*$")


def _report_fields_section() -> tuple[Path, list[str]]:
    """The lines under the one "Report fields" heading of the README or docs/*.md."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            heading = HEADING.match(line)
            if heading is None:
                continue
            level, end = len(heading.group(1)), len(lines)
            for m in range(n + 1, len(lines)):
                other = ANY_HEADING.match(lines[m])
                if other and len(other.group(1)) <= level:
                    end = m
                    break
            found.append((path, lines[n + 1 : end]))
    assert len(found) == 1, f"one 'Report fields' heading, not {[str(p) for p, _ in found]}"
    return found[0]


def documented_fields() -> dict[str, list[tuple[str, str, str]]]:
    """Each report's table, by the report name its heading gives: (field, type, meaning)."""
    _, lines = _report_fields_section()
    tables: dict[str, list[tuple[str, str, str]]] = {}
    name = None
    for line in lines:
        heading = ANY_HEADING.match(line)
        if heading:
            name = heading.group(2).strip("` ")
            tables[name] = []
            continue
        cell = FIELD_CELL.match(line)
        if cell and name is not None:
            tables[name].append((cell.group(1), cell.group(2), cell.group(3)))
    return tables


def test_every_report_has_a_table_and_nothing_else_does():
    assert list(documented_fields()) == list(reports.REPORTS)
    assert set(reports.ROW_TYPES) == set(reports.REPORTS)


@pytest.mark.parametrize("name", reports.REPORTS)
def test_the_table_lists_the_row_and_total_fields_in_order(name):
    row, total = reports.ROW_TYPES[name]
    table = documented_fields()[name]
    names = [field for field, _, _ in table]
    assert names == [f.name for f in fields(row)] + [f"total.{f.name}" for f in fields(total)]
    for field, kind, meaning in table:
        assert kind and meaning, f"{name}: {field} needs a type and a meaning"


@pytest.mark.parametrize("name", reports.REPORTS)
def test_rows_and_totals_are_frozen(name):
    for kind in reports.ROW_TYPES[name]:
        assert kind.__dataclass_params__.frozen, kind
        assert "__slots__" in vars(kind), kind
