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
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

import storage

log = logging.getLogger(__name__)

MAX_BATCH = 64
IDLE_SECONDS = 30.0


class CommitTimeout(storage.PoolTimeout):
    """The writer did not answer in time; the delivery is answered 503 and retried."""


@dataclass
class _Job:
    stored: storage.StoredEvent
    handle: storage.Handle
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

    def submit(self, stored: storage.StoredEvent, handle: storage.Handle) -> str:
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
                        conn = storage.writer(self._engine)
                    items = [(job.stored, job.handle) for job in batch]
                    outcomes: list[storage.Outcome] = storage.store_batch(self._engine, items, conn)
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
    def _answer(batch: list[_Job], outcomes: list[storage.Outcome]) -> None:
        for job, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                job.error = outcome
            else:
                job.outcome = outcome
            job.done.set()
