"""What each event writes to the ledger, as order-independent upserts.

Handlers do not write: they describe their writes (:class:`Write`), and storage runs them
in the transaction that stores the event. Every write is an upsert on a natural key whose
merge is commutative and idempotent, so the ledger is the same whatever order events arrive
in, however often they are redelivered or replayed, and whichever copy of a re-sent fact
comes first.

Each statement is built once with SQLAlchemy Core and compiled once per database, then run
as plain SQL with named parameters: the request path pays for no statement construction.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    func,
    literal_column,
    or_,
    select,
    tuple_,
)

from plugnmeet_webhooks.ledger.stays import JOIN, LEAVE
from plugnmeet_webhooks.ledger.tables import (
    FORGOTTEN,
    LEDGER_TABLES,
    attendance,
    files,
    least,
    participants,
    sessions,
    usage,
)
from plugnmeet_webhooks.normalize import Artifact, Event, NormalizationError
from plugnmeet_webhooks.storage.events import API, WEBHOOK
from plugnmeet_webhooks.storage.sql import Build, compiled, execute


def _insert(dialect_module: Any, table: Table, columns: list[str]) -> Any:
    named = dict.fromkeys([*columns, "tenant"])  # every row is one tenant's
    return dialect_module.insert(table).values({c: bindparam(c) for c in named})


def _key(table: Table) -> list[str]:
    """The columns of the table's natural key, the tenant first."""
    return [c.name for c in table.primary_key.columns]


def _session_upsert(dialect_module: Any) -> Any:
    columns = ["room_sid", "room_id", "title", "title_at", "started_at", "finished_at",
               "ended_at", "ended_from", "session_ended"]  # fmt: skip
    statement = _insert(dialect_module, sessions, columns)
    new, old = statement.excluded, sessions.c
    # The newest title wins (ties: the larger text). An end the plugNmeet API gave wins over
    # one a webhook gave, so that the session_ended it stood in for, sent late, changes no
    # figure; of two ends of one kind, the earliest wins, with its source.
    newer_title = and_(
        new.title.is_not(None),
        or_(old.title.is_(None), tuple_(new.title_at, new.title) > tuple_(old.title_at, old.title)),
    )

    def ranked(end: Any) -> Any:
        # Constants, not parameters: the statement is compiled once to plain SQL.
        api: Any = literal_column(f"'{END_FROM_API}'")
        from_api = case((end.ended_from == api, literal_column("0")), else_=literal_column("1"))
        return tuple_(from_api, end.ended_at, end.ended_from)

    earlier_end = and_(
        new.ended_at.is_not(None),
        or_(old.ended_at.is_(None), ranked(new) < ranked(old)),
    )
    return statement.on_conflict_do_update(
        index_elements=_key(sessions),
        set_={
            "room_id": func.coalesce(old.room_id, new.room_id),
            "title": case((newer_title, new.title), else_=old.title),
            "title_at": case((newer_title, new.title_at), else_=old.title_at),
            "started_at": least(old.started_at, new.started_at),
            "finished_at": least(old.finished_at, new.finished_at),
            "ended_at": case((earlier_end, new.ended_at), else_=old.ended_at),
            "ended_from": case((earlier_end, new.ended_from), else_=old.ended_from),
            "session_ended": old.session_ended | new.session_ended,
        },
    )


def _participant_upsert(dialect_module: Any) -> Any:
    columns = ["room_sid", "participant_sid", "identity", "name", "name_at"]
    statement = _insert(dialect_module, participants, columns)
    new, old = statement.excluded, participants.c
    # An identity sent replaces the sid that stood in for it (an event without one); of two
    # identities sent for one sid, the smaller stays, and a forgotten person's pseudonym
    # (name_at 0) always does. The name is the one of the earliest event that gave one
    # (ties: the smaller text); a name of unknown time gives way to any other.
    earlier_name = and_(
        new.name.is_not(None),
        or_(
            old.name.is_(None),
            old.name_at.is_(None),
            tuple_(new.name_at, new.name) < tuple_(old.name_at, old.name),
        ),
    )
    forgotten = old.name_at == literal_column(str(FORGOTTEN))  # a constant, not a parameter
    identity = case(
        (forgotten, old.identity),
        (old.identity == old.participant_sid, new.identity),
        (new.identity == new.participant_sid, old.identity),
        (new.identity < old.identity, new.identity),
        else_=old.identity,
    )
    return statement.on_conflict_do_update(
        index_elements=_key(participants),
        set_={
            "identity": identity,
            "name": case((earlier_name, new.name), else_=old.name),
            "name_at": case((earlier_name, new.name_at), else_=old.name_at),
        },
    )


def _attendance_insert(dialect_module: Any) -> Any:
    columns = ["room_sid", "participant_sid", "kind", "at"]
    statement = _insert(dialect_module, attendance, columns)
    return statement.on_conflict_do_nothing(index_elements=_key(attendance))


def _first_copy_upsert(dialect_module: Any, table: Table) -> Any:
    """Keep one row per key: of several copies, the earliest (created_at, event_key)."""
    columns = [c.name for c in table.columns]
    statement = _insert(dialect_module, table, columns)
    new, old = statement.excluded, table.c
    key = _key(table)
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={c: new[c] for c in columns if c not in key},
        where=tuple_(new.created_at, new.event_key) < tuple_(old.created_at, old.event_key),
    )


def _usage_upsert(dialect_module: Any) -> Any:
    return _first_copy_upsert(dialect_module, usage)


def _file_upsert(dialect_module: Any) -> Any:
    return _first_copy_upsert(dialect_module, files)


class Statement(Enum):
    """The ledger's upserts, each with the function that builds it."""

    SESSION = "session"
    PARTICIPANT = "participant"
    ATTENDANCE = "attendance"
    USAGE = "usage"
    FILE = "file"

    @property
    def build(self) -> Build:
        """The function that builds this statement."""
        return _BUILDERS[self]


_BUILDERS: dict[Statement, Build] = {
    Statement.SESSION: _session_upsert,
    Statement.PARTICIPANT: _participant_upsert,
    Statement.ATTENDANCE: _attendance_insert,
    Statement.USAGE: _usage_upsert,
    Statement.FILE: _file_upsert,
}


@dataclass(frozen=True, slots=True)
class Write:
    """One ledger upsert a handler asks for: which statement, and its parameters."""

    statement: Statement
    params: dict[str, Any]


def run(conn: Connection, writes: list[Write], tenant: str) -> None:
    """Run the writes a handler described for one tenant, in the caller's transaction."""
    for write in writes:
        params = write.params | {"tenant": tenant}
        execute(conn, compiled(conn.dialect, write.statement.build), params)


# --- what each event contributes ---------------------------------------------------------------


END_FROM_API = API
"""The end source of a session whose end reconciliation took from plugNmeet's API."""


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """When a session ended, and which time stamp said so."""

    at: int
    source: str  # ended_time | created_at | receipt | api


def session_end(event: Event, received_at: float, source: str = WEBHOOK) -> SessionEnd:
    """Return when the session a ``session_ended`` event announces ended.

    ``room.ended_time`` if the sender gave one, else the event's ``created_at`` (what real
    servers stamp as they end the session), else the time the event was received. A
    ``session_ended`` that reconciliation made from the API (``source`` api) carries the
    API's ``ended`` as its ``created_at``; its end source is ``api``. A session that never
    got its ``session_ended`` ends with ``room_finished`` instead: see
    :func:`plugnmeet_webhooks.ledger.tables.session_end_column`.
    """
    if source == API and event.created_at:
        return SessionEnd(event.created_at, END_FROM_API)
    if event.room.ended_time:
        return SessionEnd(event.room.ended_time, "ended_time")
    if event.created_at:
        return SessionEnd(event.created_at, "created_at")
    return SessionEnd(int(received_at), "receipt")


def session_write(event: Event, received_at: float, source: str = WEBHOOK) -> Write | None:
    """Describe what this event knows of its room's session (``source``: where the event
    came from, a delivery or the API)."""
    room = event.room
    if not room.sid:
        return None
    when = event.created_at or int(received_at)
    params: dict[str, Any] = {
        "room_sid": room.sid,
        "room_id": room.room_id or None,
        "title": room.title or None,
        "title_at": when if room.title else None,
        "started_at": room.creation_time or None,
        "finished_at": when if event.event == "room_finished" else None,
        "ended_at": None,
        "ended_from": None,
        "session_ended": event.event == "session_ended",
    }
    if event.event == "session_ended":
        end = session_end(event, received_at, source)
        if room.creation_time and end.at < room.creation_time:
            raise NormalizationError(
                f"session_ended: the session ends ({end.source} {end.at}) before it started "
                f"(room.creation_time {room.creation_time})"
            )
        params["ended_at"], params["ended_from"] = end.at, end.source
    return Write(Statement.SESSION, params)


def participant_write(event: Event, received_at: float) -> Write | None:
    """Describe who the event's participant sid is in this session: identity and name.

    Joins, leaves and track events all say it; the name is dated by the event's time (its
    ``created_at``, else the time it was received), so that the earliest one wins.
    """
    p = event.participant
    if p is None or not event.room.sid or not (p.sid or p.identity):
        return None
    when = event.created_at or int(received_at)
    named = {"name": p.name, "name_at": when} if p.name else {"name": None, "name_at": None}
    return Write(
        Statement.PARTICIPANT,
        {
            "room_sid": event.room.sid,
            "participant_sid": p.sid or p.identity,
            "identity": p.identity or p.sid,
        }
        | named,
    )


def attendance_writes(event: Event, received_at: float) -> list[Write]:
    """Describe a join or a leave: who it is (:func:`participant_write`) and the marks it
    leaves in this session's attendance.

    A join marks ``participant.joined_at`` (else the event's time); a leave marks the
    event's time, and its ``participant.joined_at`` too (no later than the leave), so that a
    stay whose join was lost still counts. The event's time is its ``created_at``, else the
    time it was received.
    """
    p = event.participant
    who = participant_write(event, received_at)
    if p is None or who is None:
        return []
    when = event.created_at or int(received_at)
    sid = {k: who.params[k] for k in ("room_sid", "participant_sid")}
    marks = []
    if event.event == "participant_joined":
        marks.append((JOIN, p.joined_at or when))
    elif event.event == "participant_left":
        marks.append((LEAVE, when))
        if p.joined_at and p.joined_at <= when:
            marks.append((JOIN, p.joined_at))
    return [
        who,
        *(Write(Statement.ATTENDANCE, sid | {"kind": kind, "at": at}) for kind, at in marks),
    ]


def _micros(cost: float | None) -> int | None:
    return None if cost is None else round(cost * 1_000_000)


def artifact_writes(
    event: Event, artifact: Artifact, usage_row: Any, event_key: str, received_at: float
) -> list[Write]:
    """Describe a usage artifact as one usage row and a file artifact as one file row."""
    meta = artifact.metadata
    key = artifact.artifact_id or event_key
    common = {
        "event_key": event_key,
        "room_sid": event.room.sid or None,
        "room_id": event.room.room_id or None,
        "created_at": event.created_at or int(received_at),
    }
    writes = []
    if usage_row is not None:
        user_id = meta.user_info.user_id if meta.user_info else ""
        breakdown = usage_row.breakdown
        writes.append(
            Write(
                Statement.USAGE,
                common
                | {
                    "artifact_id": key,
                    "artifact_type": artifact.type,
                    "quantity": usage_row.quantity,
                    "unit": usage_row.unit,
                    "prompt_tokens": usage_row.prompt_tokens,
                    "completion_tokens": usage_row.completion_tokens,
                    "cost_micros": _micros(usage_row.cost),
                    "user_id": user_id or None,
                    "breakdown": json.dumps(breakdown, sort_keys=True) if breakdown else None,
                    "reference_artifact_id": meta.reference_artifact_id or None,
                },
            )
        )
    info = meta.file_info
    if info is not None and info.file_path:
        writes.append(
            Write(
                Statement.FILE,
                common
                | {
                    "file_key": key,
                    "kind": artifact.type,
                    "path": info.file_path,
                    "size_bytes": info.file_size or None,
                    "size_mb": None,
                    "mime_type": info.mime_type or mimetypes.guess_type(info.file_path)[0],
                },
            )
        )
    return writes


def recording_write(event: Event, event_key: str, received_at: float) -> Write | None:
    """Describe a finished recording file as one file row."""
    info = event.recording_info
    if info is None or not info.file_path:
        return None
    return Write(
        Statement.FILE,
        {
            "file_key": f"recording:{info.record_id or info.file_path}",
            "event_key": event_key,
            "room_sid": event.room.sid or None,
            "room_id": event.room.room_id or None,
            "kind": "RECORDING",
            "path": info.file_path,
            "size_bytes": None,
            "size_mb": info.file_size or None,
            "mime_type": mimetypes.guess_type(info.file_path)[0],
            "created_at": event.created_at or int(received_at),
        },
    )


def is_empty(conn: Connection) -> bool:
    """Tell whether no ledger table holds a row."""
    return all(conn.execute(select(t).limit(1)).first() is None for t in LEDGER_TABLES)


def clear(conn: Connection) -> None:
    """Delete every ledger row (the raw events stay); a replay then rebuilds them."""
    for table in LEDGER_TABLES:
        conn.execute(table.delete())
