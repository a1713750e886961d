"""Group commit: whatever deliveries are waiting are stored in one transaction.

With ``synchronous=FULL`` every commit waits for the disk. A request thread that finds no
batch in progress stores every event waiting at that moment in one transaction and commits
once, then wakes each waiting thread with its own outcome; while it commits, the next
deliveries gather for the next batch. No delivery is answered before the commit that holds
it, and a fault fails only the deliveries of that batch: with the database error, which the
route answers by its kind (503 for an outage, so the sender retries).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from plugnmeet_webhooks.storage.batch import Delivery, Outcome, Result
from plugnmeet_webhooks.storage.engine import PoolTimeout, writer

MAX_BATCH = 64


StoreBatch = Callable[[Connection, list[Delivery]], list[Result]]
"""What a batch's leader calls with the connection and the batch (the runtime binds engine and
apply)."""


class CommitTimeout(PoolTimeout):
    """The writer did not answer in time; the delivery is answered 503 and retried."""


class CommitterStopped(PoolTimeout):
    """The process is stopping and did not store the delivery; it is answered 503 and retried."""


@dataclass
class _Job:
    delivery: Delivery
    done: threading.Event = field(default_factory=threading.Event)
    taken: bool = False  # into a batch: from then on it will be answered
    lead: bool = False  # this delivery's thread stores the next batch
    result: Result | None = None


class GroupCommitter:
    """Store deliveries in batches; the thread of one waiting delivery stores each batch.

    No thread is handed the work: the first delivery to find no batch in progress stores
    every delivery waiting at that moment (its own included) in one transaction, answers
    them, and passes the lead to the oldest delivery still waiting. Others wait for their
    answer. One connection serves every batch, one batch at a time; after ``idle_seconds``
    without a batch it is closed and the memory of the burst handed back.
    ``store`` does the work of one batch; ``wait_seconds`` bounds how long a delivery waits
    for a batch to take it.
    """

    def __init__(
        self,
        engine: Engine,
        store: StoreBatch,
        *,
        wait_seconds: float,
        idle_seconds: float = 10.0,
    ) -> None:
        self._engine = engine
        self._store = store
        self._wait = wait_seconds
        self._idle = idle_seconds
        self._queue: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._leading = False  # a batch is being stored
        self._conn: Connection | None = None  # used only by the thread that leads
        self._last_batch = 0.0
        self._janitor: threading.Thread | None = None
        self._closing = False
        self._stopped = False  # no delivery is taken any more

    @property
    def writer_running(self) -> bool:
        """Tell whether the committer holds a connection now (it lets it go when idle)."""
        with self._cond:
            return self._conn is not None or self._leading

    def submit(self, delivery: Delivery) -> Outcome:
        """Store one delivery with the next batch; return its outcome once it is committed."""
        job = _Job(delivery)
        with self._cond:
            if self._stopped:
                raise CommitterStopped("the receiver is stopping; the sender will retry")
            self._queue.append(job)
            if not self._leading:
                self._leading = job.lead = True
        if not job.lead and not job.done.wait(self._wait):
            with self._cond:
                if not job.taken and not job.lead:  # never started: it will not be stored
                    self._queue.remove(job)
                    raise CommitTimeout(f"the committer did not start it within {self._wait:.0f} s")
            # Its batch is running (or it leads the next): its outcome must not be lost.
            if not job.lead and not job.done.wait(self._wait):
                raise CommitTimeout(f"its batch did not commit within {2 * self._wait:.0f} s")
        if job.result is None:  # the lead was passed to it: store the next batch
            self._lead()
        if isinstance(job.result, BaseException):
            raise job.result
        assert job.result is not None
        return job.result

    def _take(self) -> list[_Job]:
        with self._cond:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            for job in batch:
                job.taken = True
            return batch

    def _lead(self) -> None:
        """Store one batch (this thread's delivery is the oldest waiting), then pass the lead."""
        batch: list[_Job] = []
        try:
            batch = self._take()
            results = self._store_on_connection([job.delivery for job in batch])
            self._answer(batch, results)
        except BaseException as exc:  # every delivery of the batch must hear of it
            self._answer(batch, [exc] * len(batch))
            raise
        finally:
            with self._cond:
                self._last_batch = time.monotonic()
                waiting = next((job for job in self._queue if not job.lead), None)
                if waiting is not None and not self._stopped:
                    waiting.lead = True
                    waiting.done.set()  # wakes it to lead; its result is still None
                else:
                    self._leading = False
                    self._cond.notify_all()
                self._ensure_janitor()

    def _store_on_connection(self, deliveries: list[Delivery]) -> list[Result]:
        try:
            if self._conn is None:
                self._conn = writer(self._engine)
            results = self._store(self._conn, deliveries)
        except Exception as exc:
            results = [exc] * len(deliveries)
        if any(isinstance(r, BaseException) for r in results):
            self._drop_connection()  # start afresh after any fault
        return results

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _ensure_janitor(self) -> None:
        """Start the thread that lets the connection go once batches stop (cond held)."""
        if self._janitor is None and not self._closing:
            self._janitor = threading.Thread(target=self._tidy, name="pnm-commit-idle", daemon=True)
            self._janitor.start()

    def _tidy(self) -> None:
        with self._cond:
            while not self._closing:
                idle_for = time.monotonic() - self._last_batch
                if idle_for >= self._idle and not self._leading:
                    self._drop_connection()
                    break
                self._cond.wait(max(self._idle - idle_for, 0.01))
            self._janitor = None
        release_memory()

    def stop_taking(self, grace: float) -> None:
        """Within ``grace`` seconds, stop taking deliveries: answer those still queued and any
        later ones with :class:`CommitterStopped` (503), so that a stopping process leaves no
        delivery unanswered. The batch being stored finishes and is answered as usual."""
        timer = threading.Timer(grace, self._refuse_queued)
        timer.daemon = True
        timer.start()

    def _refuse_queued(self) -> None:
        with self._cond:
            self._stopped = True
            for job in [job for job in self._queue if not job.lead]:
                self._queue.remove(job)
                job.result = CommitterStopped("the receiver stopped before storing it")
                job.done.set()
            self._cond.notify_all()

    def close(self, timeout: float | None = None) -> None:
        """Let the batches of deliveries already queued finish, then free the connection."""
        deadline = time.monotonic() + (self._wait if timeout is None else timeout)
        with self._cond:
            self._cond.wait_for(
                lambda: not self._leading and not self._queue,
                max(0.0, deadline - time.monotonic()),
            )
        self._refuse_queued()
        with self._cond:
            self._cond.wait_for(lambda: not self._leading, max(0.0, deadline - time.monotonic()))
            self._closing = True
            if not self._leading:
                self._drop_connection()
            self._cond.notify_all()

    @staticmethod
    def _answer(batch: list[_Job], results: list[Result]) -> None:
        for job, result in zip(batch, results, strict=True):
            job.result = result
            job.done.set()


def release_memory() -> None:
    """After a burst, hand the heap memory it freed back to the system (glibc's arenas keep
    it otherwise, and a worker would stay as large as its largest burst)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
