"""Run stored events through their handlers again, oldest first, in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.storage.errors import is_transient
from plugnmeet_webhooks.storage.events import (
    EventFilter,
    HandlerStatus,
    Receipt,
    each_batch,
    error_text,
    events,
    mark_failed,
)
from plugnmeet_webhooks.text import plain

log = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """How a replay went."""

    events: int = 0
    failed: int = 0
    repaired: int = 0


ReplayHandle = Callable[[Connection, bytes, Receipt], None]
"""Apply one stored body again: connection, body, and how the event was received."""


def _replay_batch(
    conn: Connection, rows: Sequence[Any], handle: ReplayHandle, *, careful: bool
) -> ReplayResult:
    """Handle a batch of stored events; ``careful`` isolates each one in a savepoint."""
    result = ReplayResult(events=len(rows))
    for row in rows:
        savepoint = conn.begin_nested() if careful else None
        error = None
        try:
            handle(conn, row.body, Receipt(row.dedupe_key, row.received_at, row.tenant, row.source))
        except SQLAlchemyError as exc:
            if savepoint is None or is_transient(exc):
                raise
            savepoint.rollback()
            error = error_text(exc)
        except Exception as exc:  # handlers only plan before they write: nothing to undo
            error = error_text(exc)
        else:
            if savepoint is not None:
                savepoint.commit()
        if error is not None:
            log.error("replay of %s event %s failed: %s", row.event, plain(row.dedupe_key), error)
            result.failed += 1
            mark_failed(conn, row.id, error)
        elif row.handler_status != HandlerStatus.OK:
            result.repaired += 1
            conn.execute(
                events.update()
                .where(events.c.id == row.id)
                .values(handler_status=HandlerStatus.OK, handler_error=None)
            )
    return result


def replay_events(
    engine: Engine,
    handle: ReplayHandle,
    which: EventFilter | None = None,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run ``handle`` again over stored events, oldest first, one transaction a batch.

    A batch whose ledger write fails is run again one event at a time, each in a savepoint,
    so one bad event is marked failed without holding back the others.
    """
    columns = (
        events.c.event, events.c.dedupe_key, events.c.body, events.c.received_at,
        events.c.handler_status, events.c.tenant, events.c.source,
    )  # fmt: skip
    total = ReplayResult()

    def batch(conn: Connection, rows: list[Any]) -> None:
        try:
            with conn.begin_nested():
                done = _replay_batch(conn, rows, handle, careful=False)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            done = _replay_batch(conn, rows, handle, careful=True)
        total.events += done.events
        total.failed += done.failed
        total.repaired += done.repaired
        if progress is not None:
            progress(len(rows))

    each_batch(engine, which or EventFilter(), columns, batch, batch_size=batch_size)
    return total
