"""A batch of verified deliveries stored in one transaction, with one commit for all.

Each delivery ends as an :class:`Outcome`, or as the database error that kept it out, which
the route answers by its kind (503 for an outage, so the sender retries). One bad event
fails only its own delivery. :mod:`~plugnmeet_webhooks.storage.committer` gathers the
batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.storage.engine import PoolTimeout, write_transaction
from plugnmeet_webhooks.storage.errors import describe, is_transient
from plugnmeet_webhooks.storage.events import (
    HandlerStatus,
    StoredEvent,
    error_text,
    insert_event,
    mark_failed,
    stored_digest,
)
from plugnmeet_webhooks.text import plain, shown

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """What became of a delivery that reached the database."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"  # the same event id with another body: the first body is kept
    HANDLER_FAILED = "handler_failed"  # stored all the same, marked failed for a replay


Result = Outcome | BaseException
"""An outcome, or the database error that kept the delivery out (the route answers it by
its kind: 503 for an outage, which the sender retries)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery on its way to storage: the row to insert and the parsed body."""

    stored: StoredEvent
    payload: dict[str, Any]


Apply = Callable[[Connection, Delivery], None]
"""Apply a newly stored delivery to the ledger, in the transaction that stored it."""


def _known(conn: Connection, stored: StoredEvent) -> Outcome:
    """Tell a redelivery from another body sent under an id already stored (kept first)."""
    kept = stored_digest(conn, stored)
    if kept is None or kept == stored.body_sha256:
        return Outcome.DUPLICATE
    log.warning(
        "%s event %s arrived again with another body (sha256 %s, kept %s); the first body "
        "stays, the new one is dropped.",
        shown(stored.event), plain(stored.dedupe_key), stored.body_sha256, kept,
    )  # fmt: skip
    return Outcome.CONFLICT


def _store_one(conn: Connection, delivery: Delivery, apply: Apply) -> Outcome:
    stored = delivery.stored
    row_id = insert_event(conn, stored)
    if row_id is None:
        return _known(conn, stored)
    if stored.handler_status == HandlerStatus.FAILED:  # refused at the edge: kept, not applied
        return Outcome.HANDLER_FAILED
    try:
        apply(conn, delivery)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # handlers only plan before they write: nothing to undo
        label, key = shown(stored.event), plain(stored.dedupe_key)
        log.exception("handler for %s event %s failed", label, key)
        mark_failed(conn, row_id, error_text(exc))
        return Outcome.HANDLER_FAILED
    return Outcome.ACCEPTED


class _EventFailed(Exception):
    """A statement of one event failed (not BEGIN or COMMIT); ``cause`` says how."""

    def __init__(self, cause: SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _store_all(conn: Connection, deliveries: list[Delivery], apply: Apply) -> list[Outcome]:
    outcomes = []
    for delivery in deliveries:
        try:
            outcomes.append(_store_one(conn, delivery, apply))
        except SQLAlchemyError as exc:
            raise _EventFailed(exc) from exc
    return outcomes


def _store_alone(
    engine: Engine, delivery: Delivery, apply: Apply, conn: Connection | None
) -> Result:
    """Store one event in its own transaction; a failing ledger write marks it failed."""
    stored = delivery.stored
    try:
        with write_transaction(engine, conn) as tx:
            return _store_all(tx, [delivery], apply)[0]
    except _EventFailed as failure:
        if is_transient(failure.cause):
            return failure.cause
        # Its ledger write failed and took the transaction with it: keep the event alone.
        log.error(
            "storing %s event %s with its ledger writes failed; it is kept alone, marked "
            "failed: %s",
            shown(stored.event), plain(stored.dedupe_key), describe(failure.cause),
        )  # fmt: skip
        failed = replace(
            stored, handler_status=HandlerStatus.FAILED, handler_error=error_text(failure.cause)
        )
        try:
            with write_transaction(engine, conn) as tx:
                if insert_event(tx, failed) is None:
                    return _known(tx, failed)
                return Outcome.HANDLER_FAILED
        except SQLAlchemyError as exc:
            return exc
    except SQLAlchemyError as exc:
        return exc


class BatchOutOfTime(PoolTimeout):
    """A batch spent its time budget on lock waits; the rest of it is answered 503."""


def _store_each_alone(
    engine: Engine,
    deliveries: list[Delivery],
    apply: Apply,
    conn: Connection | None,
    deadline: float | None,
) -> list[Result]:
    """Try each event of a failed batch in its own transaction, within the batch's budget.

    A retry that waits for a lock spends the budget; once it is spent, the events left are
    answered 503 at once instead of each waiting in turn, and their senders retry them.
    """
    results: list[Result] = []
    for delivery in deliveries:
        if deadline is not None and time.monotonic() > deadline:
            results.append(BatchOutOfTime("the batch spent its time waiting for the database"))
        else:
            results.append(_store_alone(engine, delivery, apply, conn))
    return results


def store_batch(
    engine: Engine,
    deliveries: list[Delivery],
    apply: Apply,
    conn: Connection | None = None,
    *,
    budget: float | None = None,
) -> list[Result]:
    """Store deliveries and apply them to the ledger in one transaction: one commit for all.

    Each result is an :class:`Outcome`, or the database error that kept that delivery out
    (answered by its kind). Events are taken in room order, so batches of two workers
    lock shared rows in one order and cannot deadlock. When one event's statement fails, each
    event is tried again alone, so one bad event fails only its own delivery. When the batch
    cannot begin or commit for a lock or a lost connection, every event would meet the same:
    all are answered at once. ``budget`` (seconds) bounds the retries of one batch.
    """
    deadline = None if budget is None else time.monotonic() + budget
    order = sorted(range(len(deliveries)), key=lambda i: (deliveries[i].stored.room_sid or "", i))
    ordered = [deliveries[i] for i in order]
    results: list[Result]
    try:
        with write_transaction(engine, conn) as tx:
            results = list(_store_all(tx, ordered, apply))
    except _EventFailed:
        results = _store_each_alone(engine, ordered, apply, conn, deadline)
    except SQLAlchemyError as exc:
        if is_transient(exc):
            results = [exc] * len(ordered)
        else:
            results = _store_each_alone(engine, ordered, apply, conn, deadline)
    outcomes: list[Result] = [Outcome.ACCEPTED] * len(deliveries)
    for position, index in enumerate(order):
        outcomes[index] = results[position]
    return outcomes
