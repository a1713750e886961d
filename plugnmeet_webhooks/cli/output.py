"""How commands print: aligned tables, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from plugnmeet_webhooks.text import printable, spreadsheet_safe


def cell(value: Any) -> str:
    """Write one value for a table: '-' for nothing, costs to 6 decimals, maps as a list."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, dict):
        return ", ".join(f"{v} {k}" for k, v in value.items())
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Align text cells in columns under a header line; control characters are escaped."""
    lines = [list(header), *([printable(c) for c in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def as_json(value: Any) -> str:
    """Render what a command shows as JSON: indented, text as it is."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def report_json(report: dict[str, Any]) -> str:
    """Render a report as indented JSON (the stable form)."""
    return as_json(report)


def utc_time(seconds: float) -> str:
    """A time stamp as a table shows it: UTC, to the second."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def report_csv(report: dict[str, Any]) -> str:
    """Render a report's rows as CSV with a header line (totals are left to the reader)."""
    rows: Sequence[dict[str, Any]] = report["rows"]
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return spreadsheet_safe(value) if isinstance(value, str) else value


def report_table(report: dict[str, Any]) -> str:
    """Render a report as aligned columns with a total line."""
    rows: Sequence[dict[str, Any]] = report["rows"]
    if not rows:
        return "No rows for these filters."
    header = list(rows[0])
    body = table(header, [[cell(row[h]) for h in header] for row in rows])
    totals = ", ".join(f"{k.replace('_', ' ')} {cell(v)}" for k, v in report["total"].items())
    return f"{body}\n\nTotal: {totals}"


REPORT_FORMATS: dict[str, Callable[[dict[str, Any]], str]] = {
    "table": report_table,
    "csv": report_csv,
    "json": report_json,
}
