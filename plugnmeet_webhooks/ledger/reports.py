"""Reports over the ledger: sessions, AI usage and per-room totals, as rows ready to print.

The JSON forms are a stable interface for billing systems; their field names are listed in
docs/ledger-and-reports.md. Times are ISO 8601 in UTC, costs are in the plugNmeet server's
currency unit (6 decimals, ``null`` when the server reported none), durations are whole
seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

from plugnmeet_webhooks.ledger import stays
from plugnmeet_webhooks.ledger.attendance import attendance_by_session
from plugnmeet_webhooks.ledger.periods import DAY, MAX_DAYS, Filters, iso, within
from plugnmeet_webhooks.ledger.tables import (
    files,
    session_end_column,
    sessions,
    usage,
)

REPORTS = ("sessions", "usage", "rooms", "days", "attendance", "files")


MICROS = 1_000_000  # costs are kept in micro-units of the currency


def cost(micros: int | None) -> float | None:
    """Turn micro-units back into the currency unit, exactly to 6 decimals."""
    return None if micros is None else round(int(micros) / MICROS, 6)


def session_status(ended: bool, end_source: str | None) -> str:
    """Name a session's state: ended, finished without session_ended, or still open."""
    if ended:
        return "ended"
    return "no_session_ended" if end_source else "open"


def sessions_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """One row per room session, oldest first, with billable minutes and a total."""
    query = select(sessions, session_end_column().label("session_end"))
    query = within(query, sessions.c.started_at, sessions.c.room_id, filters)
    found = sorted(
        conn.execute(query),
        key=lambda r: (r.started_at is None, r.started_at or 0, r.tenant, r.room_sid),
    )
    rows = [
        {
            "tenant": r.tenant,
            "room_sid": r.room_sid,
            "room_id": r.room_id,
            "title": r.title,
            "started_at": iso(r.started_at),
            "ended_at": iso(r.session_end),
            "end_source": r.end_source,
            "status": session_status(r.session_ended, r.end_source),
            "duration_seconds": r.duration_seconds,
            "billable_minutes": r.billable_minutes,
        }
        for r in found
    ]
    total = {
        "sessions": len(rows),
        "billable_minutes": sum(r["billable_minutes"] or 0 for r in rows),
    }
    return {"rows": rows, "total": total}


def _sum_costs(micros: Sequence[int | None]) -> float | None:
    """Add costs exactly, in micro-units; None when none was reported."""
    reported = [int(m) for m in micros if m is not None]
    return cost(sum(reported)) if reported else None


def _cost_parts() -> list[Any]:
    """Sum costs as whole units and leftover micro-units, two sums that cannot overflow.

    A single sum of micro-units would overflow SQLite's 64-bit integers once a group held
    a few million of the largest costs allowed; each part stays within 2^63 for billions
    of rows. :func:`_joined` puts them back together exactly.
    """
    return [
        func.sum(usage.c.cost_micros // MICROS).label("cost_units"),
        func.sum(usage.c.cost_micros % MICROS).label("cost_rest"),
    ]


def _without_cost() -> Any:
    """How many artifacts of a group came with no cost."""
    return func.sum(case((usage.c.cost_micros.is_(None), 1), else_=0)).label("without_cost")


def _joined(row: Any) -> int | None:
    """The exact micro-unit sum of a row made with :func:`_cost_parts`; None when none."""
    if row.cost_units is None:
        return None
    return int(row.cost_units) * MICROS + int(row.cost_rest)


def usage_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """AI usage per room and artifact type: quantity, unit, estimated cost; and a grand total."""
    query = select(
        usage.c.tenant,
        usage.c.room_id,
        usage.c.artifact_type,
        usage.c.unit,
        func.count().label("artifacts"),
        func.sum(usage.c.quantity).label("quantity"),
        *_cost_parts(),
        _without_cost(),
    ).group_by(usage.c.tenant, usage.c.room_id, usage.c.artifact_type, usage.c.unit)
    query = within(query, usage.c.created_at, usage.c.room_id, filters)
    found = sorted(
        conn.execute(query), key=lambda r: (r.tenant, r.room_id or "", r.artifact_type, r.unit)
    )
    micros = [_joined(r) for r in found]
    rows = [
        {
            "tenant": r.tenant,
            "room_id": r.room_id,
            "artifact_type": r.artifact_type,
            "unit": r.unit,
            "artifacts": r.artifacts,
            "quantity": int(r.quantity),
            "estimated_cost": cost(m),
            "artifacts_without_cost": int(r.without_cost),
        }
        for r, m in zip(found, micros, strict=True)
    ]
    by_unit: dict[str, int] = {}
    for r in rows:
        by_unit[r["unit"]] = by_unit.get(r["unit"], 0) + r["quantity"]
    total = {
        "artifacts": sum(r["artifacts"] for r in rows),
        "quantity_by_unit": dict(sorted(by_unit.items())),
        "estimated_cost": _sum_costs(micros),
        "artifacts_without_cost": sum(r["artifacts_without_cost"] for r in rows),
    }
    return {"rows": rows, "total": total}


def rooms_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """Per room: sessions, billable minutes, attendees, attendee minutes and AI cost; and a
    total, where a person who attended several rooms is one attendee."""
    rooms: dict[tuple[str, str], dict[str, Any]] = {}

    def room(tenant: str, room_id: str | None) -> dict[str, Any]:
        return rooms.setdefault(
            (tenant, room_id or ""),
            {
                "tenant": tenant,
                "room_id": room_id,
                "sessions": 0,
                "billable_minutes": 0,
                "attendees": 0,
                "attendee_minutes": 0,
                "ai_cost": None,
            },
        )

    session_totals = select(
        sessions.c.tenant,
        sessions.c.room_id,
        func.count().label("sessions"),
        func.coalesce(func.sum(sessions.c.billable_minutes), 0).label("minutes"),
    ).group_by(sessions.c.tenant, sessions.c.room_id)
    session_totals = within(session_totals, sessions.c.started_at, sessions.c.room_id, filters)
    for r in conn.execute(session_totals):
        room(r.tenant, r.room_id).update(sessions=r.sessions, billable_minutes=int(r.minutes))
    people: dict[tuple[str, str], set[str]] = {}
    for held in attendance_by_session(conn, filters):
        by_person = held.seconds_by_person()
        room(held.tenant, held.room_id)["attendee_minutes"] += stays.attendee_minutes(by_person)
        people.setdefault((held.tenant, held.room_id or ""), set()).update(by_person)
    for key, who in people.items():
        rooms[key]["attendees"] = len(who)
    # A person is their identity within a tenant, whichever rooms they were in.
    attendees = {(tenant, identity) for (tenant, _), who in people.items() for identity in who}
    cost_totals = select(usage.c.tenant, usage.c.room_id, *_cost_parts()).group_by(
        usage.c.tenant, usage.c.room_id
    )
    micros: list[int] = []
    for r in conn.execute(within(cost_totals, usage.c.created_at, usage.c.room_id, filters)):
        joined = _joined(r)
        room(r.tenant, r.room_id)["ai_cost"] = cost(joined)
        if joined is not None:
            micros.append(joined)

    rows = sorted(rooms.values(), key=lambda r: (r["tenant"], r["room_id"] or ""))
    total = {
        "rooms": len(rows),
        "sessions": sum(r["sessions"] for r in rows),
        "billable_minutes": sum(r["billable_minutes"] for r in rows),
        "attendees": len(attendees),
        "attendee_minutes": sum(r["attendee_minutes"] for r in rows),
        "ai_cost": _sum_costs(micros),
    }
    return {"rows": rows, "total": total}


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds * DAY, UTC).date().isoformat()


def days_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """Per UTC day: sessions started, their billable minutes, and AI cost by artifact type.

    With both ``since`` and ``until``, every day between them has a row, zeros included.
    """
    days: dict[str, dict[str, Any]] = {}

    def day(key: str) -> dict[str, Any]:
        return days.setdefault(
            key,
            {"day": key, "sessions": 0, "billable_minutes": 0, "ai_cost": None,
             "ai_cost_by_type": {}},
        )  # fmt: skip

    started = (sessions.c.started_at // DAY).label("day")
    per_day = select(
        started,
        func.count().label("sessions"),
        func.coalesce(func.sum(sessions.c.billable_minutes), 0).label("minutes"),
    ).where(sessions.c.started_at.is_not(None))
    per_day = within(per_day, sessions.c.started_at, sessions.c.room_id, filters).group_by(started)
    for r in conn.execute(per_day):
        day(_day(int(r.day))).update(sessions=r.sessions, billable_minutes=int(r.minutes))
    created = (usage.c.created_at // DAY).label("day")
    costs = select(created, usage.c.artifact_type, _without_cost(), *_cost_parts()).group_by(
        created, usage.c.artifact_type
    )
    micros: list[int] = []
    without_cost = 0
    for r in conn.execute(within(costs, usage.c.created_at, usage.c.room_id, filters)):
        without_cost += int(r.without_cost)
        joined = _joined(r)
        if joined is None:
            continue
        row = day(_day(int(r.day)))
        row["ai_cost_by_type"][r.artifact_type] = cost(joined)
        micros.append(joined)
        row["_micros"] = row.get("_micros", 0) + joined
    # Every day of the period has a row, zeros included; an open end stops at the data.
    known = sorted(days)
    first = filters.since or (date.fromisoformat(known[0]) if known else None)
    last = filters.until or (date.fromisoformat(known[-1]) if known else None)
    if first and last:
        for n in range((last - first).days + 1):
            day((first + timedelta(days=n)).isoformat())
    rows = [days[key] for key in sorted(days)]
    for row in rows:
        row["ai_cost"] = cost(row.pop("_micros")) if "_micros" in row else None
        row["ai_cost_by_type"] = dict(sorted(row["ai_cost_by_type"].items()))
    total = {
        "days": len(rows),
        "sessions": sum(r["sessions"] for r in rows),
        "billable_minutes": sum(r["billable_minutes"] for r in rows),
        "ai_cost": _sum_costs(micros),
        "artifacts_without_cost": without_cost,
    }
    return {"rows": rows, "total": total}


def attendance_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """Who was in each session when: one row per stay, session by session, in time order."""
    rows = []
    minutes = 0
    for held in attendance_by_session(conn, filters):
        held_stays = held.stays()
        minutes += stays.attendee_minutes(stays.per_person(held_stays))
        names = held.names()
        for stay in held_stays:
            rows.append(
                {
                    "tenant": held.tenant,
                    "room_id": held.room_id,
                    "room_sid": held.room_sid,
                    "identity": stay.identity,
                    "name": names.get(stay.identity),
                    "participant_sid": stay.participant_sid,
                    "joined_at": iso(stay.joined_at),
                    "left_at": iso(stay.left_at),
                    "left_from": stay.closed_by,
                    "seconds": stay.seconds,
                }
            )
    total = {
        "stays": len(rows),
        # Each person once, however many sessions they attended: the rooms total's attendees.
        "people": len({(r["tenant"], r["identity"]) for r in rows}),
        "attendee_minutes": minutes,
    }
    return {"rows": rows, "total": total}


def files_report(conn: Connection, filters: Filters) -> dict[str, Any]:
    """The recordings and files of the rooms, newest first."""
    query = within(select(files), files.c.created_at, files.c.room_id, filters)
    found = sorted(conn.execute(query), key=lambda r: (-r.created_at, r.file_key))
    rows = [
        {
            "tenant": r.tenant,
            "room_id": r.room_id,
            "kind": r.kind,
            "path": r.path,
            "size_bytes": r.size_bytes,
            "size_mb": r.size_mb,
            "mime_type": r.mime_type,
            "created_at": iso(r.created_at),
        }
        for r in found
    ]
    return {"rows": rows, "total": {"files": len(rows)}}


BUILDERS: dict[str, Callable[[Connection, Filters], dict[str, Any]]] = {
    "sessions": sessions_report,
    "usage": usage_report,
    "rooms": rooms_report,
    "days": days_report,
    "attendance": attendance_report,
    "files": files_report,
}


def check(name: str, filters: Filters) -> None:
    """Refuse filters the named report cannot answer in reasonable size, saying why."""
    if name == "days" and filters.since and filters.until:
        span = (filters.until - filters.since).days + 1
        if span > MAX_DAYS:
            raise ValueError(
                f"the days report covers at most {MAX_DAYS:,} days, not {span:,}; "
                "narrow since and until"
            )


def build(conn: Connection, name: str, filters: Filters) -> dict[str, Any]:
    """Build the named report (after :func:`check`)."""
    check(name, filters)
    return BUILDERS[name](conn, filters)
