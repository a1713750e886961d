"""The ledger's tables, and the SQL function their merges need on both databases.

Derived figures (duration, billable minutes) are generated columns: the
database computes them from the merged facts, so they cannot disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Computed,
    Float,
    Index,
    PrimaryKeyConstraint,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from plugnmeet_webhooks.storage.sql import metadata

# A session ends with its session_ended; one that never got it, with its room_finished.
_END_COLUMNS = ("ended_at", "finished_at")
_END = f"COALESCE({', '.join(_END_COLUMNS)})"
_DURATION = (
    f"CASE WHEN started_at IS NULL OR {_END} IS NULL THEN NULL "
    f"WHEN {_END} < started_at THEN 0 ELSE {_END} - started_at END"
)

sessions = Table(
    "sessions",
    metadata,
    Column("room_sid", Text, nullable=False),
    Column("room_id", Text),
    Column("title", Text),
    Column("title_at", BigInteger),
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
    Column("tenant", Text, nullable=False),
    PrimaryKeyConstraint("tenant", "room_sid"),
)
Index("ix_sessions_room_started", sessions.c.room_id, sessions.c.started_at)
Index("ix_sessions_started", sessions.c.started_at)

usage = Table(
    "usage",
    metadata,
    Column("artifact_id", Text, nullable=False),
    Column("event_key", Text, nullable=False),
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
    Column("tenant", Text, nullable=False),
    PrimaryKeyConstraint("tenant", "artifact_id"),
)
Index("ix_usage_room_created", usage.c.room_id, usage.c.created_at)
Index("ix_usage_created", usage.c.created_at)

files = Table(
    "files",
    metadata,
    Column("file_key", Text, nullable=False),
    Column("event_key", Text, nullable=False),
    Column("room_sid", Text),
    Column("room_id", Text),
    Column("kind", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("size_bytes", BigInteger),
    Column("size_mb", Float),
    Column("mime_type", Text),
    Column("created_at", BigInteger, nullable=False),
    Column("tenant", Text, nullable=False),
    PrimaryKeyConstraint("tenant", "file_key"),
)
Index("ix_files_room", files.c.room_id)

# Who each participant sid of a session is: the identity, and the name of the earliest event
# (a join, a leave or a track event) that gave one. A person forgotten on request has the
# pseudonym as both, dated FORGOTTEN, before any event, so that no later event can name them
# again.
FORGOTTEN = 0
participants = Table(
    "participants",
    metadata,
    Column("room_sid", Text, nullable=False),
    Column("participant_sid", Text, nullable=False),
    Column("identity", Text, nullable=False),
    Column("name", Text),
    Column("name_at", BigInteger),  # the time of the event that gave the name
    Column("tenant", Text, nullable=False),
    PrimaryKeyConstraint("tenant", "room_sid", "participant_sid"),
)
Index("ix_participants_identity", participants.c.identity)

# Each join and each leave of a participant sid, once: the stays are paired up from these
# when a report asks (plugnmeet_webhooks.ledger.stays), so no arrival order can change them.
attendance = Table(
    "attendance",
    metadata,
    Column("room_sid", Text, nullable=False),
    Column("participant_sid", Text, nullable=False),
    Column("kind", Text, nullable=False),  # join | leave
    Column("at", BigInteger, nullable=False),
    Column("tenant", Text, nullable=False),
    PrimaryKeyConstraint("tenant", "room_sid", "participant_sid", "kind", "at"),
)

LEDGER_TABLES = (sessions, usage, files, participants, attendance)


class least(GenericFunction):
    """The smaller of two values, ignoring a NULL (LEAST on PostgreSQL, MIN on SQLite)."""

    inherit_cache = True


@compiles(least, "sqlite")
def _least_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    a, b = (compiler.process(arg, **kw) for arg in element.clauses)
    return f"min(coalesce({a}, {b}), coalesce({b}, {a}))"


def session_end_column() -> ColumnElement[Any]:
    """The end of each session, as the generated columns take it: ended, else finished."""
    return func.coalesce(*(sessions.c[name] for name in _END_COLUMNS))
