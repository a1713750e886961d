"""The period a dashboard page shows, read from its query string: a preset of the last
7, 30 or 90 days, or custom days; a tenant. A mistake is shown on the page, not a 400."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import request

from plugnmeet_webhooks.ledger import periods, reports

PRESETS = (7, 30, 90)


def read_period() -> tuple[periods.Filters, dict[str, Any]]:
    """Read the period and tenant from the query string: a preset, or custom days."""
    args = request.args
    today = datetime.now(UTC).date()
    preset = args.get("days", "")
    since_text, until_text = args.get("since", ""), args.get("until", "")
    problem = None
    try:
        if since_text or until_text:
            filters = periods.Filters.parse(
                since_text or None, until_text or None, None, args.get("tenant")
            )
            days = None
        else:
            days = int(preset) if preset.isdigit() and int(preset) in PRESETS else 30
            filters = periods.Filters.parse(
                (today - timedelta(days=days - 1)).isoformat(),
                today.isoformat(),
                None,
                args.get("tenant"),
            )
        reports.check("days", filters)
    except ValueError as exc:
        problem = f"{exc}."
        days = 30
        try:
            tenant = periods.checked_name("tenant", args.get("tenant"))
        except ValueError:
            tenant = None
        filters = periods.Filters(since=today - timedelta(days=29), until=today, tenant=tenant)
    shown = {
        "days": days,
        "since": filters.since.isoformat() if filters.since else "",
        "until": filters.until.isoformat() if filters.until else "",
        "tenant": filters.tenant or "",
        "problem": problem,
    }
    return filters, shown
