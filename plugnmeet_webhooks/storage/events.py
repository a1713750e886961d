"""The events table: every verified delivery, with its raw body, stored once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    literal_column,
    select,
    text,
)

from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import compiled, execute, metadata

WEBHOOK = "webhook"
API = "api"
"""The sources of stored events: a delivery, or a fact reconciliation learned from the API."""


class HandlerStatus(StrEnum):
    """What became of a stored event's handler: it ran, or it failed (kept for a replay)."""

    OK = "ok"
    FAILED = "failed"


events = Table(
    "events",
    metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True),
    Column("dedupe_key", String(200), nullable=False),
    Column("event_id", String(200)),
    Column("event", String(200), nullable=False),
    Column("room_id", Text),
    Column("room_sid", Text),
    Column("created_at", BigInteger),
    Column("received_at", Float, nullable=False),
    Column("api_key", Text, nullable=False),
    Column("remote_addr", Text),
    Column("body_sha256", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("handler_status", String(16), nullable=False, server_default=HandlerStatus.OK.value),
    Column("handler_error", Text),
    # The tenant whose data this is: the signing key's, or the name the operator gave it.
    Column("tenant", Text, nullable=False),
    # When retention removed the raw body (the event row and its ledger rows stay).
    Column("pruned_at", Float),
    # Where the event came from: a delivery, or plugNmeet's API for a delivery that was lost.
    Column("source", String(16), nullable=False, server_default=WEBHOOK),
    UniqueConstraint("tenant", "dedupe_key", name="uq_events_tenant_dedupe_key"),
)
Index("ix_events_event", events.c.event)
Index("ix_events_room_id", events.c.room_id)
Index("ix_events_received_at", events.c.received_at)
Index("ix_events_handler_status", events.c.handler_status)
# The few facts from plugNmeet's API, found without reading the many deliveries (the
# dashboard's source filter); a delivery's insert does not touch it.
_FROM_API = text("source = 'api'")
Index("ix_events_api", events.c.id, sqlite_where=_FROM_API, postgresql_where=_FROM_API)


@dataclass(frozen=True, slots=True)
class Receipt:
    """How a stored event is known once it is in: its key, when it came, whose it is, and
    from where (a delivery, or plugNmeet's API)."""

    event_key: str
    received_at: float
    tenant: str
    source: str = WEBHOOK


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the route knows of a delivery once it is verified and parsed."""

    dedupe_key: str
    event_id: str | None
    event: str
    room_id: str | None
    room_sid: str | None
    created_at: int | None
    received_at: float
    api_key: str
    remote_addr: str | None
    body_sha256: str
    body: bytes
    tenant: str
    handler_status: HandlerStatus = HandlerStatus.OK
    handler_error: str | None = None
    source: str = WEBHOOK

    @property
    def receipt(self) -> Receipt:
        return Receipt(self.dedupe_key, self.received_at, self.tenant, self.source)


_EVENT_COLUMNS = [c.name for c in events.columns if c.name not in ("id", "pruned_at")]


def _event_insert(module: Any) -> Any:
    statement = module.insert(events).values({c: bindparam(c) for c in _EVENT_COLUMNS})
    return statement.on_conflict_do_nothing(index_elements=["tenant", "dedupe_key"]).returning(
        events.c.id
    )


def _stored_digest(module: Any) -> Any:
    return select(events.c.body_sha256).where(
        events.c.tenant == bindparam("tenant"), events.c.dedupe_key == bindparam("dedupe_key")
    )


def insert_event(conn: Connection, stored: StoredEvent) -> int | None:
    """Insert the event unless its tenant has its dedupe key; return its row id, or None."""
    params = {c: getattr(stored, c) for c in _EVENT_COLUMNS}
    row = execute(conn, compiled(conn.dialect, _event_insert), params).fetchone()
    return None if row is None else row[0]


def stored_digest(conn: Connection, stored: StoredEvent) -> str | None:
    """Return the body digest kept for the event with this one's tenant and dedupe key."""
    params = {"tenant": stored.tenant, "dedupe_key": stored.dedupe_key}
    row = execute(conn, compiled(conn.dialect, _stored_digest), params).fetchone()
    return None if row is None else str(row[0])


def mark_failed(conn: Connection, row_id: int, error: str) -> None:
    """Record that the handler of a stored event raised."""
    conn.execute(
        events.update()
        .where(events.c.id == row_id)
        .values(handler_status=HandlerStatus.FAILED, handler_error=error[:4000])
    )


def error_text(exc: BaseException) -> str:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"[:4000]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events a listing, a replay, a backfill, a forgetting or a pruning takes.

    Every field narrows; the default takes every event whose raw body is still kept.
    """

    since: float | None = None  # received at or after (unix seconds)
    until: float | None = None  # received before
    event_key: str | None = None
    row_id: int | None = None
    after_id: int | None = None  # row ids above this one
    before_id: int | None = None  # row ids below this one
    names: tuple[str, ...] = ()  # only these events, when given
    room_id: str | None = None
    tenant: str | None = None
    handler: HandlerStatus | None = None
    source: str | None = None  # WEBHOOK or API
    pruned: bool | None = False  # whose raw body retention removed; None: either

    def apply(self, query: Any) -> Any:
        """Narrow ``query`` over the events table to the matching events (all indexed)."""
        c = events.c
        if self.pruned is not None:
            query = query.where(c.pruned_at.is_not(None) if self.pruned else c.pruned_at.is_(None))
        if self.since is not None:
            query = query.where(c.received_at >= self.since)
        if self.until is not None:
            query = query.where(c.received_at < self.until)
        if self.event_key is not None:
            query = query.where(c.dedupe_key == self.event_key)
        if self.row_id is not None:
            query = query.where(c.id == self.row_id)
        if self.after_id is not None:
            query = query.where(c.id > self.after_id)
        if self.before_id is not None:
            query = query.where(c.id < self.before_id)
        if self.names:
            query = query.where(c.event.in_(self.names))
        if self.room_id is not None:
            query = query.where(c.room_id == self.room_id)
        if self.tenant is not None:
            query = query.where(c.tenant == self.tenant)
        if self.handler is not None:
            query = query.where(c.handler_status == self.handler.value)
        if self.source == API:  # written as the partial index ix_events_api says it
            query = query.where(c.source == literal_column(f"'{API}'"))
        elif self.source is not None:
            query = query.where(c.source == self.source)
        return query


def each_batch(
    engine: Engine,
    which: EventFilter,
    columns: Sequence[Any],
    handle: Callable[[Connection, list[Any]], None],
    *,
    batch_size: int = 500,
    write: bool = True,
) -> int:
    """Call ``handle`` with each batch of the matching events, oldest first, in the
    transaction that read the batch (a read-only one unless ``write``): committed once
    ``handle`` returns, rolled back if it raises. Rows have ``id`` and ``columns``. Return
    how many events were handled."""
    query = which.apply(select(events.c.id, *columns)).order_by(events.c.id)
    last = handled = 0
    while True:
        scope: AbstractContextManager[Connection] = (
            write_transaction(engine) if write else engine.connect()
        )
        with scope as conn:
            rows = list(conn.execute(query.where(events.c.id > last).limit(batch_size)))
            if rows:
                handle(conn, rows)
        if not rows:
            return handled
        handled += len(rows)
        last = rows[-1].id


def count_matching(engine: Engine, which: EventFilter) -> int:
    """Count the events a replay with this filter would take."""
    with engine.connect() as conn:
        return int(conn.execute(which.apply(select(func.count()).select_from(events))).scalar_one())


def count_events(engine: Engine) -> int:
    """Return how many events are stored."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


def has_events(conn: Connection) -> bool:
    """Tell whether any event is stored."""
    return conn.execute(select(events.c.id).limit(1)).first() is not None


def list_events(
    engine: Engine, which: EventFilter = EventFilter(pruned=None), *, limit: int = 20
) -> list[dict[str, Any]]:
    """Return the newest matching events (any, by default), without their bodies."""
    columns = [c for c in events.c if c.name != "body"]
    query = which.apply(select(*columns)).order_by(events.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def now() -> float:
    """Return the receipt time stamp used for stored events (unix seconds)."""
    return time.time()
