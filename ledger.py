"""The ledger: sessions, AI usage, files and attendance, derived from stored events.

Every write is an upsert on a natural key whose merge is commutative and idempotent
(``COALESCE`` for facts that do not change, least/greatest for times), so the ledger is the
same whatever order events arrive in and however often they are redelivered or replayed.
Derived figures (duration, billable minutes, attendance seconds) are generated columns:
the database computes them from the merged facts, so they can never disagree with them.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    Connection,
    Float,
    Index,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from normalize import Artifact, Event
from storage import dialect_insert, metadata

_END = "COALESCE(ended_at, finished_at)"
_DURATION = (
    f"CASE WHEN started_at IS NULL OR {_END} IS NULL THEN NULL "
    f"WHEN {_END} < started_at THEN 0 ELSE {_END} - started_at END"
)

sessions = Table(
    "sessions",
    metadata,
    Column("room_sid", Text, primary_key=True),
    Column("room_id", Text),
    Column("title", Text),
    Column("started_at", BigInteger),
    Column("finished_at", BigInteger),
    Column("ended_at", BigInteger),
    Column("ended_from", Text),
    Column("session_ended", Boolean, nullable=False, server_default=false()),
    Column(
        "end_source",
        Text,
        Computed(
            "CASE WHEN ended_at IS NOT NULL THEN ended_from "
            "WHEN finished_at IS NOT NULL THEN 'room_finished' END",
            persisted=True,
        ),
    ),
    Column("duration_seconds", BigInteger, Computed(_DURATION, persisted=True)),
    Column("billable_minutes", BigInteger, Computed(f"({_DURATION} + 59) / 60", persisted=True)),
)
Index("ix_sessions_room_started", sessions.c.room_id, sessions.c.started_at)
Index("ix_sessions_started", sessions.c.started_at)

usage = Table(
    "usage",
    metadata,
    Column("artifact_id", Text, primary_key=True),
    Column("event_id", Text),
    Column("room_sid", Text),
    Column("room_id", Text),
    Column("artifact_type", Text, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("unit", Text, nullable=False),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    # Micro-units of the server's currency: exact sums on both databases.
    Column("cost_micros", BigInteger),
    Column("user_id", Text),
    Column("breakdown", Text),
    Column("reference_artifact_id", Text),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_usage_room_created", usage.c.room_id, usage.c.created_at)
Index("ix_usage_created", usage.c.created_at)

files = Table(
    "files",
    metadata,
    Column("file_key", Text, primary_key=True),
    Column("event_id", Text),
    Column("room_sid", Text),
    Column("room_id", Text),
    Column("kind", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger),
    Column("size_mb", Float),
    Column("mime_type", Text),
    Column("created_at", BigInteger, nullable=False),
)
Index("ix_files_room", files.c.room_id)

attendance = Table(
    "attendance",
    metadata,
    Column("room_sid", Text, primary_key=True),
    Column("participant_sid", Text, primary_key=True),
    Column("identity", Text, nullable=False),
    Column("name", Text),
    Column("joined_at", BigInteger),
    Column("left_at", BigInteger),
    Column(
        "seconds",
        BigInteger,
        Computed(
            "CASE WHEN joined_at IS NULL OR left_at IS NULL THEN NULL "
            "WHEN left_at < joined_at THEN 0 ELSE left_at - joined_at END",
            persisted=True,
        ),
    ),
)
Index("ix_attendance_identity", attendance.c.identity)

LEDGER_TABLES = (sessions, usage, files, attendance)


class least(GenericFunction):
    """The smaller of two values, ignoring a NULL (LEAST on PostgreSQL, MIN on SQLite)."""

    inherit_cache = True


class greatest(GenericFunction):
    """The larger of two values, ignoring a NULL (GREATEST on PostgreSQL, MAX on SQLite)."""

    inherit_cache = True


@compiles(least, "sqlite")
def _least_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"min(coalesce({a}, {b}), coalesce({b}, {a}))"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"max(coalesce({a}, {b}), coalesce({b}, {a}))"


def _keep_first(table: Table, statement: Any, *names: str) -> dict[str, Any]:
    return {n: func.coalesce(table.c[n], statement.excluded[n]) for n in names}


def record_session(conn: Connection, event: Event, received_at: float) -> None:
    """Merge what this event knows of its room's session into the sessions table."""
    room = event.room
    if not room.sid:
        return
    values: dict[str, Any] = {
        "room_sid": room.sid,
        "room_id": room.room_id or None,
        "title": room.title or None,
        "started_at": room.creation_time or None,
        "session_ended": False,
    }
    if event.event == "room_finished":
        values["finished_at"] = event.created_at or int(received_at)
    if event.event == "session_ended":
        if room.ended_time:
            values["ended_at"], values["ended_from"] = room.ended_time, "ended_time"
        elif event.created_at:
            values["ended_at"], values["ended_from"] = event.created_at, "created_at"
        else:
            values["ended_at"], values["ended_from"] = int(received_at), "receipt"
        values["session_ended"] = True
    statement = dialect_insert(conn, sessions).values(values)
    merge = _keep_first(sessions, statement, "room_id", "title", "started_at")
    merge["finished_at"] = least(sessions.c.finished_at, statement.excluded.finished_at)
    # One session_ended per session: its end and where it came from travel together.
    merge["ended_from"] = func.coalesce(sessions.c.ended_from, statement.excluded.ended_from)
    merge["ended_at"] = func.coalesce(sessions.c.ended_at, statement.excluded.ended_at)
    merge["session_ended"] = sessions.c.session_ended | statement.excluded.session_ended
    conn.execute(statement.on_conflict_do_update(index_elements=["room_sid"], set_=merge))


def record_attendance(conn: Connection, event: Event, received_at: float) -> None:
    """Merge a join or a leave into the participant's attendance in this session."""
    p = event.participant
    if p is None or not event.room.sid or not (p.sid or p.identity):
        return
    when = event.created_at or int(received_at)
    values: dict[str, Any] = {
        "room_sid": event.room.sid,
        "participant_sid": p.sid or p.identity,
        "identity": p.identity or p.sid,
        "name": p.name or None,
        "joined_at": p.joined_at or (when if event.event == "participant_joined" else None),
        "left_at": when if event.event == "participant_left" else None,
    }
    statement = dialect_insert(conn, attendance).values(values)
    merge = _keep_first(attendance, statement, "name")
    merge["joined_at"] = least(attendance.c.joined_at, statement.excluded.joined_at)
    merge["left_at"] = greatest(attendance.c.left_at, statement.excluded.left_at)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["room_sid", "participant_sid"], set_=merge)
    )


def _micros(cost: float | None) -> int | None:
    return None if cost is None else round(cost * 1_000_000)


def record_artifact(
    conn: Connection, event: Event, artifact: Artifact, usage_row: Any, received_at: float
) -> None:
    """Keep a usage artifact as one usage row and a file artifact as one file row."""
    meta = artifact.metadata
    key = artifact.artifact_id or f"event:{event.id}"
    when = event.created_at or int(received_at)
    room = {"room_sid": event.room.sid or None, "room_id": event.room.room_id or None}
    if usage_row is not None:
        statement = dialect_insert(conn, usage).values(
            artifact_id=key,
            event_id=event.id or None,
            **room,
            artifact_type=artifact.type,
            quantity=usage_row.quantity,
            unit=usage_row.unit,
            prompt_tokens=usage_row.prompt_tokens,
            completion_tokens=usage_row.completion_tokens,
            cost_micros=_micros(usage_row.cost),
            user_id=meta.user_info.user_id if meta.user_info and meta.user_info.user_id else None,
            breakdown=json.dumps(usage_row.breakdown, sort_keys=True)
            if usage_row.breakdown
            else None,
            reference_artifact_id=meta.reference_artifact_id or None,
            created_at=when,
        )
        conn.execute(statement.on_conflict_do_nothing(index_elements=["artifact_id"]))
    if meta.file_info is not None and meta.file_info.file_path:
        info = meta.file_info
        statement = dialect_insert(conn, files).values(
            file_key=key,
            event_id=event.id or None,
            **room,
            kind=artifact.type,
            path=info.file_path,
            size_bytes=info.file_size or None,
            mime_type=info.mime_type or mimetypes.guess_type(info.file_path)[0],
            created_at=when,
        )
        conn.execute(statement.on_conflict_do_nothing(index_elements=["file_key"]))


def record_recording(conn: Connection, event: Event, received_at: float) -> None:
    """Keep a finished recording file as one file row."""
    info = event.recording_info
    if info is None or not info.file_path:
        return
    statement = dialect_insert(conn, files).values(
        file_key=f"recording:{info.record_id or info.file_path}",
        event_id=event.id or None,
        room_sid=event.room.sid or None,
        room_id=event.room.room_id or None,
        kind="RECORDING",
        path=info.file_path,
        size_mb=info.file_size or None,
        mime_type=mimetypes.guess_type(info.file_path)[0],
        created_at=event.created_at or int(received_at),
    )
    conn.execute(statement.on_conflict_do_nothing(index_elements=["file_key"]))


def clear(conn: Connection) -> None:
    """Delete every ledger row (the raw events stay); a replay then rebuilds them."""
    for table in LEDGER_TABLES:
        conn.execute(table.delete())
