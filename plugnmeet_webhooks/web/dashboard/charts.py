"""What the dashboard's charts draw, as JSON for a data attribute (no inline script).

Chart.js draws them in the browser; each chart has its numbers in a table beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from plugnmeet_webhooks.ledger.reports import AttendanceRow, DayRow, SessionRow


def chart(kind: str, labels: list[str], series: list[dict[str, Any]], unit: str) -> str:
    """The data a chart draws, as JSON for a data attribute (no inline script)."""
    return json.dumps({"kind": kind, "labels": labels, "series": series, "unit": unit})


def daily_charts(rows: Sequence[DayRow]) -> tuple[list[str], str, str]:
    """The days report's rows as the overview's two charts: billable minutes per day, and AI
    cost per day stacked by type; with the types, in name order."""
    types = sorted({t for row in rows for t in row.ai_cost_by_type})
    labels = [row.day for row in rows]
    minutes_chart = chart(
        "bar",
        labels,
        [{"label": "billable minutes", "data": [r.billable_minutes for r in rows]}],
        "minutes",
    )
    cost_chart = chart(
        "stacked",
        labels,
        [{"label": t, "data": [r.ai_cost_by_type.get(t, 0) or 0 for r in rows]} for t in types],
        "cost",
    )
    return types, minutes_chart, cost_chart


def presence_chart(session: SessionRow, stays: Sequence[AttendanceRow]) -> str:
    """A session's presence chart: a row per person, a bar per stay."""
    people: dict[str, list[list[str | None]]] = {}
    labels: dict[str, str] = {}
    for stay in stays:  # in time order: people in the order they first came
        people.setdefault(stay.identity, []).append([stay.joined_at, stay.left_at])
        labels.setdefault(stay.identity, stay.name or stay.identity)
    most = max((len(own) for own in people.values()), default=0)
    series = [
        {
            "label": "present",
            "data": [own[n] if n < len(own) else None for own in people.values()],
        }
        for n in range(most)
    ]
    return json.dumps(
        {
            "kind": "timeline",
            "labels": list(labels.values()),
            "series": series,
            "start": session.started_at,
            "end": session.ended_at,
            "unit": "time",
        }
    )
