"""The part of the ledger a report covers: a period of whole UTC days, a room, a tenant.

Days are read from ``2026-11-01``-style text with one sentence per mistake; times are
unix seconds in the ledger and ISO 8601 in UTC in the reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

DAY = 86400
MAX_DAYS = 3660  # the days report has a row per day: ten years at most
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Filters:
    """Which part of the ledger a report covers; ``until`` is inclusive (a whole day)."""

    since: date | None = None
    until: date | None = None
    room: str | None = None
    tenant: str | None = None
    span: tuple[int, int] | None = None  # exact [start, end) seconds, e.g. a month in a zone

    @classmethod
    def parse(
        cls,
        since: str | None,
        until: str | None,
        room: str | None,
        tenant: str | None = None,
    ) -> Filters:
        """Read filters as given on a command line or in a query string, or say what is wrong."""
        days = {
            name: parse_day(name, text)
            for name, text in (("since", since), ("until", until))
            if text
        }
        if "since" in days and "until" in days and days["since"] > days["until"]:
            raise ValueError(f"since {days['since']} is after until {days['until']}; swap them")
        return cls(
            since=days.get("since"),
            until=days.get("until"),
            room=checked_name("room", room),
            tenant=checked_name("tenant", tenant),
        )

    def bounds(self) -> tuple[int | None, int | None]:
        """Return [start, end) in unix seconds: the span, or whole UTC days."""
        if self.span is not None:
            return self.span
        start = epoch(self.since) if self.since else None
        end = epoch(self.until + timedelta(days=1)) if self.until else None
        return start, end


def parse_day(name: str, text: str) -> date:
    """Read a day written as 2026-11-01, or say which option is wrong."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-11-01, not {text[:40]!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{name} must be a date from {FIRST_DAY} to {LAST_DAY}, not {day}")
    return day


def checked_name(what: str, text: str | None) -> str | None:
    """Read a room id or tenant filter: printable text of at most 200 characters."""
    if not text:
        return None
    if len(text) > MAX_NAME or not text.isprintable():
        raise ValueError(f"{what} must be printable text of at most {MAX_NAME} characters")
    return text


def epoch(day: date) -> int:
    """Return the first second of a UTC day."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def iso(seconds: int | None) -> str | None:
    """Format unix seconds as ISO 8601 UTC, e.g. ``2025-11-26T15:30:00Z``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def within(query: Any, column: Any, room_column: Any, filters: Filters) -> Any:
    """Narrow ``query`` to the filters: ``column`` in the period, ``room_column`` the room
    (and its table's ``tenant`` the tenant)."""
    start, end = filters.bounds()
    if start is not None:
        query = query.where(column >= start)
    if end is not None:
        query = query.where(column < end)
    if filters.room:
        query = query.where(room_column == filters.room)
    if filters.tenant:
        query = query.where(room_column.table.c.tenant == filters.tenant)
    return query
