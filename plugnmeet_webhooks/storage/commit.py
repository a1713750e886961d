"""Group commit: one writer thread per process stores whatever deliveries are waiting.

With ``synchronous=FULL`` every commit waits for the disk. Request threads hand their
verified event to the writer and wait; the writer takes every event waiting at that moment,
stores them in one transaction and commits once, then wakes each thread with its own
outcome. No delivery is answered before the commit that holds it, and a fault fails only
the deliveries of that batch (503, retried by the sender).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.storage.engine import PoolTimeout, write_transaction, writer
from plugnmeet_webhooks.storage.errors import is_transient
from plugnmeet_webhooks.storage.events import StoredEvent, error_text, insert_event, mark_failed
from plugnmeet_webhooks.text import plain, shown

log = logging.getLogger(__name__)

MAX_BATCH = 64
IDLE_SECONDS = 30.0


Handle = Callable[[Connection], None]


def _store_one(conn: Connection, stored: StoredEvent, handle: Handle) -> str:
    row_id = insert_event(conn, stored)
    if row_id is None:
        return "duplicate"
    try:
        handle(conn)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # handlers only plan before they write: nothing to undo
        label, key = shown(stored.event), plain(stored.dedupe_key)
        log.exception("handler for %s event %s failed", label, key)
        mark_failed(conn, row_id, error_text(exc))
        return "handler_failed"
    return "accepted"


class _EventFailed(Exception):
    """A statement of one event failed (not BEGIN or COMMIT); ``cause`` says how."""

    def __init__(self, cause: SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _store_all(conn: Connection, items: list[tuple[StoredEvent, Handle]]) -> list[str]:
    outcomes = []
    for stored, handle in items:
        try:
            outcomes.append(_store_one(conn, stored, handle))
        except SQLAlchemyError as exc:
            raise _EventFailed(exc) from exc
    return outcomes


Outcome = str | BaseException
"""``accepted``, ``duplicate``, ``handler_failed``, or the error that kept it from storage."""


def _store_alone(
    engine: Engine, item: tuple[StoredEvent, Handle], conn: Connection | None
) -> Outcome:
    """Store one event in its own transaction; a failing ledger write marks it failed."""
    stored = item[0]
    try:
        with write_transaction(engine, conn) as tx:
            return _store_all(tx, [item])[0]
    except _EventFailed as failure:
        if is_transient(failure.cause):
            return failure.cause
        # Its ledger write failed and took the transaction with it: keep the event alone.
        log.error(
            "ledger write for %s event %s failed: %s",
            shown(stored.event), plain(stored.dedupe_key), error_text(failure.cause),
        )  # fmt: skip
        failed = replace(stored, handler_status="failed", handler_error=error_text(failure.cause))
        try:
            with write_transaction(engine, conn) as tx:
                return "handler_failed" if insert_event(tx, failed) else "duplicate"
        except SQLAlchemyError as exc:
            return exc
    except SQLAlchemyError as exc:
        return exc


def store_batch(
    engine: Engine, items: list[tuple[StoredEvent, Handle]], conn: Connection | None = None
) -> list[Outcome]:
    """Store events and run their handlers in one transaction: one commit for them all.

    Each outcome is ``accepted``, ``duplicate``, ``handler_failed`` (stored all the same,
    marked failed, for a later ``replay --failed``), or the database error that kept that
    event out (its delivery is answered 503 and retried). Events are taken in room order, so
    batches of two workers lock shared rows in one order and cannot deadlock. When the
    batch fails as a whole, each event is tried again alone: one bad or unlucky event fails
    only its own delivery.
    """
    order = sorted(range(len(items)), key=lambda i: (items[i][0].room_sid or "", i))
    ordered = [items[i] for i in order]
    try:
        with write_transaction(engine, conn) as tx:
            results: list[Outcome] = list(_store_all(tx, ordered))
    except (_EventFailed, SQLAlchemyError):
        results = [_store_alone(engine, item, conn) for item in ordered]
    outcomes: list[Outcome] = [""] * len(items)
    for position, index in enumerate(order):
        outcomes[index] = results[position]
    return outcomes


class CommitTimeout(PoolTimeout):
    """The writer did not answer in time; the delivery is answered 503 and retried."""


@dataclass
class _Job:
    stored: StoredEvent
    handle: Handle
    done: threading.Event = field(default_factory=threading.Event)
    taken: bool = False  # by the writer, into a batch: from then on it will be answered
    outcome: str | None = None
    error: BaseException | None = None


class GroupCommitter:
    """Store events in batches on a writer thread that starts on demand and ends when idle."""

    def __init__(self, engine: Engine, *, wait_seconds: float) -> None:
        self._engine = engine
        self._wait = wait_seconds
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False

    def submit(self, stored: StoredEvent, handle: Handle) -> str:
        """Store one event with the next batch; return its outcome once it is committed."""
        job = _Job(stored, handle)
        with self._cond:
            self._queue.append(job)
            self._ensure_writer()
            self._cond.notify()
        if not job.done.wait(self._wait):
            with self._cond:
                if not job.taken:  # never started: it will not be stored, so say so
                    self._queue.remove(job)
                    raise CommitTimeout(f"the writer did not start it within {self._wait:.0f} s")
            # Its batch is running: its outcome is on the way, and must not be lost.
            if not job.done.wait(self._wait):
                raise CommitTimeout(f"the writer did not commit within {2 * self._wait:.0f} s")
        if job.error is not None:
            raise job.error
        assert job.outcome is not None
        return job.outcome

    def _ensure_writer(self) -> None:
        if self._writer is None:
            self._closing = False
            self._writer = threading.Thread(target=self._run, name="pnm-writer", daemon=True)
            self._writer.start()

    def close(self) -> None:
        """Let the writer finish what is queued, then stop it and release its connection."""
        with self._cond:
            writer, self._closing = self._writer, True
            self._cond.notify()
        if writer is not None:
            writer.join(timeout=self._wait)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closing, IDLE_SECONDS)
            if not self._queue:
                self._writer = None  # idle or closing: a later submit starts a new writer
                return None
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            for job in batch:
                job.taken = True
            return batch

    def _run(self) -> None:
        conn: Connection | None = None  # one connection for the writer's life
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    if conn is None:
                        conn = writer(self._engine)
                    items = [(job.stored, job.handle) for job in batch]
                    outcomes: list[Outcome] = store_batch(self._engine, items, conn)
                except BaseException as exc:  # every waiting delivery must hear of it
                    outcomes = [exc] * len(batch)
                    if not isinstance(exc, Exception):
                        self._answer(batch, outcomes)
                        raise
                self._answer(batch, outcomes)
                if conn is not None and any(isinstance(o, BaseException) for o in outcomes):
                    with contextlib.suppress(Exception):  # start afresh after any fault
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            with self._cond:  # however it ended, deliveries still queued get a new writer
                if self._writer is threading.current_thread():
                    self._writer = None
                    if self._queue:
                        self._ensure_writer()

    @staticmethod
    def _answer(batch: list[_Job], outcomes: list[Outcome]) -> None:
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.error = outcome
            else:
                job.outcome = outcome
            job.done.set()
