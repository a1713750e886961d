"""Reports over the ledger: sessions, AI usage and per-room totals, as rows ready to print.

Each report is a :class:`Report`: typed rows and a typed total, one frozen dataclass each.
Their JSON forms (:meth:`Report.as_dict`) are a stable interface for billing systems: the
fields, in this order, are the dataclasses' fields, and the "Report fields" tables of
docs/ledger-and-reports.md list them. Times are ISO 8601 in UTC, costs are in the plugNmeet
server's currency unit (6 decimals, ``null`` when the server reported none), durations are
whole seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

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

Row = TypeVar("Row")
Total = TypeVar("Total")


@dataclass(frozen=True, slots=True)
class Report(Generic[Row, Total]):
    """A report: its rows, and its total."""

    rows: list[Row]
    total: Total

    def as_dict(self) -> dict[str, Any]:
        """The report's stable JSON form: ``{"rows": [...], "total": {...}}``, each row and
        the total with its fields in order."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One room session."""

    tenant: str
    room_sid: str
    room_id: str | None
    title: str | None
    started_at: str | None
    ended_at: str | None
    end_source: str | None
    status: str
    duration_seconds: int | None
    billable_minutes: int | None


@dataclass(frozen=True, slots=True)
class SessionsTotal:
    """The sessions report's total."""

    sessions: int
    billable_minutes: int


@dataclass(frozen=True, slots=True)
class UsageRow:
    """The AI usage of one room and artifact type."""

    tenant: str
    room_id: str | None
    artifact_type: str
    unit: str
    artifacts: int
    quantity: int
    estimated_cost: float | None
    artifacts_without_cost: int


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """The usage report's total."""

    artifacts: int
    quantity_by_unit: dict[str, int]
    estimated_cost: float | None
    artifacts_without_cost: int


@dataclass(frozen=True, slots=True)
class RoomRow:
    """One room's totals over the period."""

    tenant: str
    room_id: str | None
    sessions: int
    billable_minutes: int
    attendees: int
    attendee_minutes: int
    ai_cost: float | None


@dataclass(frozen=True, slots=True)
class RoomsTotal:
    """The rooms report's total: a person in several rooms is one attendee."""

    rooms: int
    sessions: int
    billable_minutes: int
    attendees: int
    attendee_minutes: int
    ai_cost: float | None


@dataclass(frozen=True, slots=True)
class DayRow:
    """One UTC day: the sessions that started on it, and the AI cost of its artifacts."""

    day: str
    sessions: int
    billable_minutes: int
    ai_cost: float | None
    ai_cost_by_type: dict[str, float | None]


@dataclass(frozen=True, slots=True)
class DaysTotal:
    """The days report's total."""

    days: int
    sessions: int
    billable_minutes: int
    ai_cost: float | None
    artifacts_without_cost: int


@dataclass(frozen=True, slots=True)
class AttendanceRow:
    """One stay: a participant sid's time in a session, clipped to the session."""

    tenant: str
    room_id: str | None
    room_sid: str
    identity: str
    name: str | None
    participant_sid: str
    joined_at: str | None
    left_at: str | None
    left_from: str | None
    seconds: int | None


@dataclass(frozen=True, slots=True)
class AttendanceTotal:
    """The attendance report's total: each person once."""

    stays: int
    people: int
    attendee_minutes: int


@dataclass(frozen=True, slots=True)
class FileRow:
    """One recording or file of a room."""

    tenant: str
    room_id: str | None
    kind: str
    path: str
    size_bytes: int | None
    size_mb: float | None
    mime_type: str | None
    created_at: str | None


@dataclass(frozen=True, slots=True)
class FilesTotal:
    """The files report's total."""

    files: int


SessionsReport = Report[SessionRow, SessionsTotal]
UsageReport = Report[UsageRow, UsageTotal]
RoomsReport = Report[RoomRow, RoomsTotal]
DaysReport = Report[DayRow, DaysTotal]
AttendanceReport = Report[AttendanceRow, AttendanceTotal]
FilesReport = Report[FileRow, FilesTotal]
ROW_TYPES: dict[str, tuple[type, type]] = {
    "sessions": (SessionRow, SessionsTotal),
    "usage": (UsageRow, UsageTotal),
    "rooms": (RoomRow, RoomsTotal),
    "days": (DayRow, DaysTotal),
    "attendance": (AttendanceRow, AttendanceTotal),
    "files": (FileRow, FilesTotal),
}


def cost(micros: int | None) -> float | None:
    """Turn micro-units back into the currency unit, exactly to 6 decimals."""
    return None if micros is None else round(int(micros) / MICROS, 6)


def session_status(ended: bool, end_source: str | None) -> str:
    """Name a session's state: ended, finished without session_ended, or still open."""
    if ended:
        return "ended"
    return "no_session_ended" if end_source else "open"


def sessions_report(conn: Connection, filters: Filters) -> SessionsReport:
    """One row per room session, oldest first, with billable minutes and a total."""
    query = select(sessions, session_end_column().label("session_end"))
    query = within(query, sessions.c.started_at, sessions.c.room_id, filters)
    found = sorted(
        conn.execute(query),
        key=lambda r: (r.started_at is None, r.started_at or 0, r.tenant, r.room_sid),
    )
    rows = [
        SessionRow(
            tenant=r.tenant,
            room_sid=r.room_sid,
            room_id=r.room_id,
            title=r.title,
            started_at=iso(r.started_at),
            ended_at=iso(r.session_end),
            end_source=r.end_source,
            status=session_status(r.session_ended, r.end_source),
            duration_seconds=r.duration_seconds,
            billable_minutes=r.billable_minutes,
        )
        for r in found
    ]
    total = SessionsTotal(
        sessions=len(rows), billable_minutes=sum(r.billable_minutes or 0 for r in rows)
    )
    return Report(rows, total)


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


def usage_report(conn: Connection, filters: Filters) -> UsageReport:
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
        UsageRow(
            tenant=r.tenant,
            room_id=r.room_id,
            artifact_type=r.artifact_type,
            unit=r.unit,
            artifacts=r.artifacts,
            quantity=int(r.quantity),
            estimated_cost=cost(m),
            artifacts_without_cost=int(r.without_cost),
        )
        for r, m in zip(found, micros, strict=True)
    ]
    by_unit: dict[str, int] = {}
    for row in rows:
        by_unit[row.unit] = by_unit.get(row.unit, 0) + row.quantity
    total = UsageTotal(
        artifacts=sum(r.artifacts for r in rows),
        quantity_by_unit=dict(sorted(by_unit.items())),
        estimated_cost=_sum_costs(micros),
        artifacts_without_cost=sum(r.artifacts_without_cost for r in rows),
    )
    return Report(rows, total)


@dataclass(slots=True)
class _RoomSums:
    """A room's row while the rooms report adds it up: :class:`RoomRow`'s fields, in order."""

    tenant: str
    room_id: str | None
    sessions: int = 0
    billable_minutes: int = 0
    attendees: int = 0
    attendee_minutes: int = 0
    ai_cost: float | None = None


def rooms_report(conn: Connection, filters: Filters) -> RoomsReport:
    """Per room: sessions, billable minutes, attendees, attendee minutes and AI cost; and a
    total, where a person who attended several rooms is one attendee."""
    rooms: dict[tuple[str, str], _RoomSums] = {}

    def room(tenant: str, room_id: str | None) -> _RoomSums:
        return rooms.setdefault((tenant, room_id or ""), _RoomSums(tenant, room_id))

    session_totals = select(
        sessions.c.tenant,
        sessions.c.room_id,
        func.count().label("sessions"),
        func.coalesce(func.sum(sessions.c.billable_minutes), 0).label("minutes"),
    ).group_by(sessions.c.tenant, sessions.c.room_id)
    session_totals = within(session_totals, sessions.c.started_at, sessions.c.room_id, filters)
    for r in conn.execute(session_totals):
        sums = room(r.tenant, r.room_id)
        sums.sessions, sums.billable_minutes = r.sessions, int(r.minutes)
    people: dict[tuple[str, str], set[str]] = {}
    for held in attendance_by_session(conn, filters):
        by_person = held.seconds_by_person()
        room(held.tenant, held.room_id).attendee_minutes += stays.attendee_minutes(by_person)
        people.setdefault((held.tenant, held.room_id or ""), set()).update(by_person)
    for key, who in people.items():
        rooms[key].attendees = len(who)
    # A person is their identity within a tenant, whichever rooms they were in.
    attendees = {(tenant, identity) for (tenant, _), who in people.items() for identity in who}
    cost_totals = select(usage.c.tenant, usage.c.room_id, *_cost_parts()).group_by(
        usage.c.tenant, usage.c.room_id
    )
    micros: list[int] = []
    for r in conn.execute(within(cost_totals, usage.c.created_at, usage.c.room_id, filters)):
        joined = _joined(r)
        room(r.tenant, r.room_id).ai_cost = cost(joined)
        if joined is not None:
            micros.append(joined)

    rows = [
        RoomRow(**asdict(r))
        for r in sorted(rooms.values(), key=lambda r: (r.tenant, r.room_id or ""))
    ]
    total = RoomsTotal(
        rooms=len(rows),
        sessions=sum(r.sessions for r in rows),
        billable_minutes=sum(r.billable_minutes for r in rows),
        attendees=len(attendees),
        attendee_minutes=sum(r.attendee_minutes for r in rows),
        ai_cost=_sum_costs(micros),
    )
    return Report(rows, total)


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds * DAY, UTC).date().isoformat()


@dataclass(slots=True)
class _DaySums:
    """A day's row while the days report adds it up."""

    sessions: int = 0
    billable_minutes: int = 0
    micros: int | None = None  # the day's AI cost, None while no artifact had one
    by_type: dict[str, float | None] = field(default_factory=dict)


def days_report(conn: Connection, filters: Filters) -> DaysReport:
    """Per UTC day: sessions started, their billable minutes, and AI cost by artifact type.

    With both ``since`` and ``until``, every day between them has a row, zeros included.
    """
    days: dict[str, _DaySums] = {}

    def day(key: str) -> _DaySums:
        return days.setdefault(key, _DaySums())

    started = (sessions.c.started_at // DAY).label("day")
    per_day = select(
        started,
        func.count().label("sessions"),
        func.coalesce(func.sum(sessions.c.billable_minutes), 0).label("minutes"),
    ).where(sessions.c.started_at.is_not(None))
    per_day = within(per_day, sessions.c.started_at, sessions.c.room_id, filters).group_by(started)
    for r in conn.execute(per_day):
        sums = day(_day(int(r.day)))
        sums.sessions, sums.billable_minutes = r.sessions, int(r.minutes)
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
        sums = day(_day(int(r.day)))
        sums.by_type[r.artifact_type] = cost(joined)
        micros.append(joined)
        sums.micros = (sums.micros or 0) + joined
    # Every day of the period has a row, zeros included; an open end stops at the data.
    known = sorted(days)
    first = filters.since or (date.fromisoformat(known[0]) if known else None)
    last = filters.until or (date.fromisoformat(known[-1]) if known else None)
    if first and last:
        for n in range((last - first).days + 1):
            day((first + timedelta(days=n)).isoformat())
    rows = [
        DayRow(
            day=key,
            sessions=sums.sessions,
            billable_minutes=sums.billable_minutes,
            ai_cost=cost(sums.micros),
            ai_cost_by_type=dict(sorted(sums.by_type.items())),
        )
        for key, sums in sorted(days.items())
    ]
    total = DaysTotal(
        days=len(rows),
        sessions=sum(r.sessions for r in rows),
        billable_minutes=sum(r.billable_minutes for r in rows),
        ai_cost=_sum_costs(micros),
        artifacts_without_cost=without_cost,
    )
    return Report(rows, total)


def attendance_report(conn: Connection, filters: Filters) -> AttendanceReport:
    """Who was in each session when: one row per stay, session by session, in time order."""
    rows: list[AttendanceRow] = []
    minutes = 0
    for held in attendance_by_session(conn, filters):
        held_stays = held.stays()
        minutes += stays.attendee_minutes(stays.per_person(held_stays))
        names = held.names()
        for stay in held_stays:
            rows.append(
                AttendanceRow(
                    tenant=held.tenant,
                    room_id=held.room_id,
                    room_sid=held.room_sid,
                    identity=stay.identity,
                    name=names.get(stay.identity),
                    participant_sid=stay.participant_sid,
                    joined_at=iso(stay.joined_at),
                    left_at=iso(stay.left_at),
                    left_from=stay.closed_by,
                    seconds=stay.seconds,
                )
            )
    total = AttendanceTotal(
        stays=len(rows),
        # Each person once, however many sessions they attended: the rooms total's attendees.
        people=len({(r.tenant, r.identity) for r in rows}),
        attendee_minutes=minutes,
    )
    return Report(rows, total)


def files_report(conn: Connection, filters: Filters) -> FilesReport:
    """The recordings and files of the rooms, newest first."""
    query = within(select(files), files.c.created_at, files.c.room_id, filters)
    found = sorted(conn.execute(query), key=lambda r: (-r.created_at, r.file_key))
    rows = [
        FileRow(
            tenant=r.tenant,
            room_id=r.room_id,
            kind=r.kind,
            path=r.path,
            size_bytes=r.size_bytes,
            size_mb=r.size_mb,
            mime_type=r.mime_type,
            created_at=iso(r.created_at),
        )
        for r in found
    ]
    return Report(rows, FilesTotal(files=len(rows)))


BUILDERS: dict[str, Callable[[Connection, Filters], Report[Any, Any]]] = {
    "sessions": sessions_report,
    "usage": usage_report,
    "rooms": rooms_report,
    "days": days_report,
    "attendance": attendance_report,
    "files": files_report,
}


def newest_day(conn: Connection, filters: Filters, *, files_too: bool = False) -> date | None:
    """The UTC day of the newest session start or AI artifact (and file, with ``files_too``)
    of the filters' room and tenant, whatever their period; None when the ledger has none.

    One query, each part the newest row by an index on its time (or on the room)."""
    anywhen = replace(filters, since=None, until=None)

    def newest(column: Any, room_column: Any) -> Any:
        query = select(column).where(column.is_not(None))
        query = within(query, column, room_column, anywhen)
        return query.order_by(column.desc()).limit(1).scalar_subquery()

    parts = [
        newest(sessions.c.started_at, sessions.c.room_id),
        newest(usage.c.created_at, usage.c.room_id),
    ]
    if files_too:
        parts.append(newest(files.c.created_at, files.c.room_id))
    found = [int(at) for at in conn.execute(select(*parts)).one() if at is not None]
    if not found:
        return None
    return datetime.fromtimestamp(max(found), UTC).date()


def check(name: str, filters: Filters) -> None:
    """Refuse filters the named report cannot answer in reasonable size, saying why."""
    if name == "days" and filters.since and filters.until:
        span = (filters.until - filters.since).days + 1
        if span > MAX_DAYS:
            raise ValueError(
                f"the days report covers at most {MAX_DAYS:,} days, not {span:,}; "
                "narrow since and until"
            )


def build(conn: Connection, name: str, filters: Filters) -> Report[Any, Any]:
    """Build the named report (after :func:`check`)."""
    check(name, filters)
    return BUILDERS[name](conn, filters)
