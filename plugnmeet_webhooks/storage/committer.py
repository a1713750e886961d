"""Group commit: whatever deliveries are waiting are stored in one transaction.

With ``synchronous=FULL`` every commit waits for the disk. A request thread that finds no
batch in progress stores every event waiting at that moment in one transaction and commits
once, then wakes each waiting thread with its own outcome; while it commits, the next
deliveries gather for the next batch. No delivery is answered before the commit that holds
it, and a fault fails only the deliveries of that batch: with the database error, which the
route answers by its kind (503 for an outage, so the sender retries).

A delivery is handed over in one of two ways. :meth:`GroupCommitter.submit` waits for its
outcome (any WSGI server). :meth:`GroupCommitter.submit_later` waits for nothing: it is told
its outcome by a callback, which the thread that stores the batch calls once the batch is
committed. The gunicorn worker uses the second (``plugnmeet_webhooks.serving``), so that a
request thread hands its delivery over and is free again, instead of sleeping until the
commit and waking once for its answer.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from plugnmeet_webhooks.storage.batch import Delivery, Outcome, Result
from plugnmeet_webhooks.storage.engine import PoolTimeout, writer

log = logging.getLogger(__name__)

MAX_BATCH = 64


StoreBatch = Callable[[Connection, list[Delivery]], list[Result]]
"""What a batch's leader calls with the connection and the batch (the runtime binds engine and
apply)."""

Answer = Callable[[Result], None]
"""Told the result of a delivery handed over with :meth:`GroupCommitter.submit_later`, once."""

Flush = Callable[[], None]
"""Called once after a batch's answers have all been given, for each distinct one in it."""


class CommitTimeout(PoolTimeout):
    """The writer did not answer in time; the delivery is answered 503 and retried."""


class CommitterStopped(PoolTimeout):
    """The process is stopping and did not store the delivery; it is answered 503 and retried."""


@dataclass
class _Job:
    delivery: Delivery
    answer: Answer | None = None  # told its result; else a thread waits on ``done``
    flush: Flush | None = None  # called once its batch's answers are given
    done: threading.Event | None = None
    taken: bool = False  # into a batch: from then on it will be answered
    lead: bool = False  # this delivery's thread stores the next batch
    result: Result | None = None

    @property
    def waiting(self) -> bool:
        """A thread waits for this delivery's result (it can be handed the lead)."""
        return self.answer is None and not self.lead


class GroupCommitter:
    """Store deliveries in batches; the thread of one waiting delivery stores each batch.

    No thread is handed the work: the first delivery to find no batch in progress stores
    every delivery waiting at that moment (its own included) in one transaction, answers
    them, and goes on with the next batch while deliveries are waiting, unless a thread waits
    for its own answer: then it passes the lead to the oldest delivery whose thread waits.
    One connection serves every batch, one batch at a time; after ``idle_seconds`` without a
    batch it is closed and the memory of the burst handed back.
    ``store`` does the work of one batch; ``wait_seconds`` bounds how long a delivery handed
    over with :meth:`submit` waits for a batch to take it.
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
        job = _Job(delivery, done=threading.Event())
        done = job.done
        assert done is not None
        self._enqueue(job)
        if not job.lead and not done.wait(self._wait):
            with self._cond:
                if not job.taken and not job.lead:  # never started: it will not be stored
                    self._queue.remove(job)
                    raise CommitTimeout(f"the committer did not start it within {self._wait:.0f} s")
            # Its batch is running (or it leads the next): its outcome must not be lost.
            if not job.lead and not done.wait(self._wait):
                raise CommitTimeout(f"its batch did not commit within {2 * self._wait:.0f} s")
        if job.result is None:  # the lead was passed to it: store the next batch
            self._lead(job)
        if isinstance(job.result, BaseException):
            raise job.result
        assert job.result is not None
        return job.result

    def submit_later(self, delivery: Delivery, answer: Answer, flush: Flush | None = None) -> None:
        """Store one delivery with the next batch and call ``answer`` with its result (an
        :class:`Outcome`, or the error that kept it out) once, after the commit that holds it;
        then, once every answer of that batch is given, ``flush`` (called once a batch for each
        distinct one: the place to send what the answers gathered).

        Nothing here waits for another thread. If no batch is in progress, this thread
        stores batches until no delivery is waiting, calling each delivery's ``answer`` (its
        own among them) as its batch commits. ``answer`` runs on the storing thread: it must
        be quick and must not wait. A delivery handed over while the committer is stopping is
        answered at once with :class:`CommitterStopped`.
        """
        job = _Job(delivery, answer=answer, flush=flush)
        if not self._enqueue(job):
            stopped = CommitterStopped("the receiver is stopping; the sender will retry")
            self._answer([job], [stopped])
        elif job.lead:
            self._lead(job)

    def _enqueue(self, job: _Job) -> bool:
        """Queue a job, making it the lead if no batch is in progress; False once stopped
        (a waiting caller is told with :class:`CommitterStopped`)."""
        with self._cond:
            if self._stopped:
                if job.answer is None:
                    raise CommitterStopped("the receiver is stopping; the sender will retry")
                return False
            self._queue.append(job)
            if not self._leading:
                self._leading = job.lead = True
            return True

    def _take(self) -> list[_Job]:
        with self._cond:
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            for job in batch:
                job.taken = True
            return batch

    def _lead(self, own: _Job | None) -> None:
        """Store batches while deliveries wait. ``own`` is this thread's delivery, the oldest
        waiting now (None for a thread started only to lead).

        The lead goes on after each batch, except when this thread's caller waits for it to
        return (``own`` came through :meth:`submit`) and its delivery is answered: then the
        lead passes to the oldest delivery whose thread waits or, if only handed-over
        deliveries are left, to a new thread, so that no caller is held behind batches that
        are not its own.
        """
        while True:
            batch: list[_Job] = []
            try:
                batch = self._take()
                if batch:  # another thread may have emptied the queue (stopping, a timeout)
                    results = self._store_on_connection([job.delivery for job in batch])
                    self._answer(batch, results)
            except BaseException as exc:  # every delivery of the batch must hear of it
                self._answer(batch, [exc] * len(batch))
                self._hand_on(own, after_fault=True)
                raise
            if not self._hand_on(own):
                return

    def _hand_on(self, own: _Job | None, *, after_fault: bool = False) -> bool:
        """After a batch: True if this thread stores the next one; else the lead is passed
        on, or no batch is in progress any more."""
        with self._cond:
            self._last_batch = time.monotonic()
            try:
                return self._pass_lead(own, after_fault=after_fault)
            finally:
                with contextlib.suppress(RuntimeError):  # no thread to spare: tidied later
                    self._ensure_janitor()

    def _pass_lead(self, own: _Job | None, *, after_fault: bool) -> bool:
        """Decide who stores the next batch (the condition is held): True for this thread."""
        if self._queue and not self._stopped:
            if not after_fault and own is not None and own.result is None:
                return True  # its own delivery is still queued: it stays in the lead
            caller_waits = own is not None and own.answer is None
            if not caller_waits and not after_fault:
                return True
            waiting = next((job for job in self._queue if job.waiting), None)
            if waiting is not None:
                waiting.lead = True
                assert waiting.done is not None
                waiting.done.set()  # wakes it to lead; its result is still None
                return False
            if self._start_leader():
                return False
            if not after_fault:
                return True  # no thread to spare: this one goes on
        self._leading = False
        self._cond.notify_all()
        return False

    def _start_leader(self) -> bool:
        """Start a thread that leads the handed-over deliveries left waiting."""
        try:
            threading.Thread(
                target=self._lead, args=(None,), name="pnm-commit-lead", daemon=True
            ).start()
        except RuntimeError:
            return False
        return True

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
            refused = [job for job in self._queue if not job.lead]
            for job in refused:
                self._queue.remove(job)
                job.taken = True  # it will be answered (below): a waiting thread must wait for it
            self._cond.notify_all()
        stopped = CommitterStopped("the receiver stopped before storing it")
        self._answer(refused, [stopped] * len(refused))

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
            if job.result is not None:  # answered already (a fault after its answer)
                continue
            job.result = result
            if job.answer is not None:
                _guarded(functools.partial(job.answer, result))
            else:
                assert job.done is not None
                job.done.set()
        for flush in {job.flush for job in batch if job.flush is not None}:
            _guarded(flush)


def _guarded(call: Callable[[], None]) -> None:
    """Give a handed-over delivery its answer (or flush a batch's answers); a failing one
    must not fail the batch."""
    try:
        call()
    except Exception:
        log.exception("the answer to a stored delivery could not be given")


def release_memory() -> None:
    """After a burst, hand the heap memory it freed back to the system (glibc's arenas keep
    it otherwise, and a worker would stay as large as its largest burst)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
