"""The dispatcher: send what the outbox holds, retry what may pass, give up on what cannot.

Each destination has its own few sending slots, so a slow or dead one holds only its own
messages. A message is claimed under a lease, sent once with its stable id, and settled:
sent; due again after a back-off (connection errors, timeouts, 408, 429 and 5xx, the longer
of ``Retry-After`` and the schedule); or dead (any other answer, or the retries spent). An
attempt has a hard deadline, and the lease of a message is renewed while its attempt is
open, so no other dispatcher sends it meanwhile. A destination that answers 429 is paced:
one message at a time, spaced, for a while; its "slow down" answers spend no retries, only
a budget of time. A dispatcher that dies mid-send leaves its messages to be claimed again
when their leases run out.

How a backlog drains fast. Each slot of a destination takes a *batch* of its messages and
sends them one after another over the slot's kept-alive connection (one urllib3 pool per
destination, as many connections as slots). A batch is sized from how fast the destination
answers, so that it lasts about :data:`BATCH_SECONDS`: up to :data:`MAX_BATCH` messages to
one that answers at once, one at a time to a slow one (:data:`FIRST_BATCH` before its
first answers are timed). A batch stops early, and gives its unsent messages back (due
again at once, no attempt counted), when that time is up, when an attempt fails (no
answer, 408, 5xx) or is answered 429, or when the dispatcher stops; a message refused for
good (another 4xx) is that message's own fault, and the batch goes on. One cycle claims the
batches of every free slot of every destination, records the attempts that ended and
renews open leases, in one transaction. While a destination still had more due than it
could take, the next cycle runs as soon as one of its slots is free; only when no
destination has both work and room does a cycle wait :data:`GATHER_SECONDS` after a wake,
so that a burst of deliveries costs one transaction, not one each. After a failed attempt
(no answer, 408, a 5xx) its destination is sent nothing for :data:`FAILURE_PAUSE`, then one
message a slot until it takes one again: a dead destination is tried at the pace of old,
not as fast as it refuses connections.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import urllib3
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import DEFAULT_OUTBOX_RETRIES
from plugnmeet_webhooks.logs import quiet_http_client
from plugnmeet_webhooks.metrics import Metrics
from plugnmeet_webhooks.outbound import Watch, watched_pools, watching
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.outbox import (
    Claimed,
    Held,
    Settlement,
    State,
    cycle,
    due_destinations,
    given_back,
)
from plugnmeet_webhooks.workflows.rules import Destination

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0  # an attempt's hard deadline, from its start to the end of the answer
MAX_RETRY_AFTER = 24 * 3600.0
RATE_LIMIT_BUDGET = 24 * 3600.0  # how long "slow down" answers may keep a message waiting
PACE_SECONDS = 60.0  # a destination that said "slow down" is paced this long after it
MIN_SPACING = 1.0  # while paced, sends to it are at least this far apart
MAX_SPACING = 60.0
SLOTS_PER_DESTINATION = 4
BATCH_SECONDS = 1.0  # a slot's batch is sized to last about this long, and ends after it
FIRST_BATCH = 16  # a destination's batch before its answers were timed
MAX_BATCH = 100
POLL_SECONDS = 1.0  # a cycle at least this often
GATHER_SECONDS = 0.25  # after a wake, for more wakes to come: one transaction for them all
FAILURE_PAUSE = GATHER_SECONDS  # after a failed attempt, its destination is sent nothing
USER_AGENT = "plugnmeet-webhooks"


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one attempt went: the status (None when no answer came) and what went wrong."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def sent(self) -> bool:
        """The destination took the message (2xx)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def may_pass(self) -> bool:
        """A failure worth another attempt: no answer, 408, 429 or 5xx."""
        return self.status is None or self.status in (408, 429) or self.status >= 500

    @property
    def rate_limited(self) -> bool:
        """The destination asked to slow down (429)."""
        return self.status == 429


def retry_after(value: str | None, now: float) -> float | None:
    """Read a ``Retry-After`` header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        if value.isascii() and value.isdigit():  # "²" is a digit to Python, not to HTTP
            seconds = float(value)
        else:
            seconds = parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def headers_for(destination: Destination, claimed: Claimed, now: float) -> dict[str, str]:
    """The headers of one attempt: the message's id on every one, then the kind's own
    (a webhook's signature, say)."""
    kind = destination.kind
    headers = {
        "Content-Type": kind.content_type,
        "User-Agent": USER_AGENT,
        "Idempotency-Key": claimed.message_id,
    }
    return headers | kind.headers(destination, claimed.message_id, claimed.body, now)


def http_client() -> urllib3.PoolManager:
    """One destination's connections, kept alive between its attempts, one per sending slot,
    whose attempts a :class:`Watch` can end. Each destination has its own, so two on one
    host do not take each other's connections."""
    return watched_pools(2, SLOTS_PER_DESTINATION)


DEADLINE_PASSED = f"no whole answer within {TOTAL_TIMEOUT:.0f} s"


def _failure(exc: Exception) -> str:
    """Say what went wrong without the URL, which the library's message would hold."""
    # NewConnectionError is a ConnectTimeoutError too, for history's sake: it comes first.
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT:.0f} s"
    if isinstance(exc, (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.TimeoutError)):
        return f"no answer within {TOTAL_TIMEOUT:.0f} s"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection dropped"
    return type(exc).__name__


def send(
    http: urllib3.PoolManager,
    destination: Destination,
    claimed: Claimed,
    watch: Watch | None = None,
) -> Attempt:
    """POST one message to its destination, once; ``watch`` can end it at its deadline."""
    now = time.time()
    watching(watch)
    try:
        response = http.request(
            "POST",
            destination.kind.url(destination),
            body=claimed.body,
            headers=headers_for(destination, claimed, now),
            timeout=urllib3.Timeout(
                connect=CONNECT_TIMEOUT, read=TOTAL_TIMEOUT, total=TOTAL_TIMEOUT
            ),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        if watch is not None:
            watch.detach()
        expired = watch is not None and watch.expired
        return Attempt(status=None, error=DEADLINE_PASSED if expired else _failure(exc))
    finally:
        watching(None)
    try:
        response.read(64 * 1024, decode_content=False)  # enough to free the connection
        if not response.closed:  # an answer longer than that: its connection is not kept
            response.close()
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        pass
    finally:
        if watch is not None:
            watch.detach()
        response.release_conn()
    if watch is not None and watch.expired:  # a status line, but no whole answer in time
        return Attempt(status=None, error=DEADLINE_PASSED)
    status = response.status
    if 200 <= status < 300:
        return Attempt(status=status)
    return Attempt(
        status=status,
        error=f"HTTP {status}",
        retry_after=retry_after(response.headers.get("Retry-After"), now),
    )


@dataclass(slots=True)
class Pace:
    """How a destination that said "slow down" is sent to: one message at a time, no sooner
    than ``not_before``, each ``spacing`` seconds after the last, until ``until``."""

    not_before: float
    spacing: float
    until: float


@dataclass(slots=True)
class Stats:
    """What a dispatcher has done since it started: the cycles that wrote (one transaction
    each), the messages claimed, the largest claim of one cycle, the messages given back."""

    cycles: int = 0
    claimed: int = 0
    largest_claim: int = 0
    given_back: int = 0


class Dispatcher:
    """Send the outbox's messages from background threads until stopped.

    One thread runs cycles: each records the attempts that ended, renews the leases of the
    messages still held, and claims batches of what is due for the free slots, in one
    transaction, then hands each batch to a sending thread. A cycle follows at once while a
    destination had more due than it took and has a free slot again; otherwise after a wake
    (a delivery queued messages, a batch ended) and a short gathering pause, or the poll
    interval. With nothing to record and nothing due, a cycle writes nothing. Apart from the
    cycles, attempts past their deadline are ended.
    """

    def __init__(
        self,
        engine: Engine,
        destinations: Mapping[str, Destination],
        *,
        schedule: tuple[float, ...] = DEFAULT_OUTBOX_RETRIES,
        lease: float = 60.0,
        metrics: Metrics,
        rate_limit_budget: float = RATE_LIMIT_BUDGET,
    ) -> None:
        self._engine = engine
        self._destinations = dict(destinations)
        self._schedule = schedule
        self._lease = lease
        self._metrics = metrics
        self._rate_limit_budget = rate_limit_budget
        self._busy: Counter[str] = Counter()  # slots sending a batch, per destination
        self._settled: list[Settlement] = []
        # Every message held, by id: its claim, its attempt's watch (None until the attempt
        # starts), and when its lease ends.
        self._open: dict[int, tuple[Claimed, Watch | None, float]] = {}
        self._paced: dict[str, Pace] = {}
        self._seconds: dict[str, float] = {}  # how long a sent attempt takes (moving average)
        self._failing: dict[str, float] = {}  # destinations whose last attempt failed: until
        self._more: set[str] = set()  # destinations that had more due than they took
        self.stats = Stats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._freed = threading.Event()  # a batch ended: its slot is free
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        quiet_http_client()
        self._http = {name: http_client() for name in self._destinations}

    def start(self) -> Dispatcher:
        """Start sending in the background."""
        if self._thread is None and self._destinations:
            self._pool = ThreadPoolExecutor(
                max_workers=SLOTS_PER_DESTINATION * len(self._destinations),
                thread_name_prefix="pnm-send",
            )
            self._thread = threading.Thread(target=self._run, name="pnm-dispatcher", daemon=True)
            self._thread.start()
            threading.Thread(
                target=self._watch_deadlines, name="pnm-deadlines", daemon=True
            ).start()
            log.info("dispatcher started for %d destinations", len(self._destinations))
        return self

    def wake(self) -> None:
        """Look for due messages now (new ones were just committed)."""
        self._wake.set()

    def stop(self, timeout: float = TOTAL_TIMEOUT + 1) -> None:
        """Stop claiming, wait up to ``timeout`` for the sends in flight, record them.

        The batches stop after their current attempt and give their other messages back. A
        send cut short leaves its message under a lease; it is sent again once the lease
        runs out, with the same id.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False)  # batches not begun start, and give all back
            deadline = time.monotonic() + timeout
            while self._in_flight() and time.monotonic() < deadline:
                self._end_overdue()
                time.sleep(0.05)
            try:
                self.run_once(claim=False)
            except SQLAlchemyError as exc:
                log.warning("dispatcher could not record its last attempts: %s", describe(exc))
            log.info("dispatcher stopped")

    def _in_flight(self) -> int:
        with self._lock:
            return sum(self._busy.values())

    def _free_slots(self, now: float) -> dict[str, int]:
        """How many batches each destination may take now: its free slots, or, while it is
        paced, one at a time and no sooner than its pace allows; none for a while after a
        failed attempt."""
        free = {}
        for name in self._destinations:
            slots = SLOTS_PER_DESTINATION - self._busy[name]
            pace = self._paced.get(name)
            if pace is not None and now >= pace.until and now >= pace.not_before:
                del self._paced[name]
            elif pace is not None:
                slots = 0 if now < pace.not_before else min(slots, 1 - self._busy[name])
            if now < self._failing.get(name, 0.0):
                slots = 0
            free[name] = slots
        return free

    def _batch(self, name: str) -> int:
        """How many messages one slot of this destination takes: as many as its answers
        allow in about BATCH_SECONDS; one at a time while it is paced or failing."""
        if name in self._paced or name in self._failing:
            return 1
        seconds = self._seconds.get(name)
        if seconds is None:
            return FIRST_BATCH
        return max(1, min(MAX_BATCH, int(BATCH_SECONDS / max(seconds, 1e-4))))

    def run_once(self, *, claim: bool = True) -> int:
        """Record the attempts that ended, renew the leases of held messages, and claim
        batches of what is due; return how many were claimed."""
        now = time.time()
        with self._lock:
            settled, self._settled = self._settled, []
            free = self._free_slots(now)
            batch = {name: self._batch(name) for name in free}
            # Renewed once half the lease is gone: an attempt still open, or a message
            # waiting its turn in a batch, keeps its message.
            renew = [
                Held(claimed.id, claimed.lease_token)
                for claimed, _, lease_end in self._open.values()
                if lease_end - now < self._lease / 2
            ]
            holding = tuple(self._open)
        wanted = {name: n * batch[name] for name, n in free.items() if n > 0} if claim else {}
        if wanted:
            due = due_destinations(self._engine, list(wanted))
            wanted = {name: n for name, n in wanted.items() if name in due}
        if not settled and not wanted and not renew:
            with self._lock:
                self._more.clear()
            return 0
        # The leases the cycle gives start no later than this, whatever the cycle waits.
        now = time.time()
        try:
            claimed = cycle(self._engine, settled, wanted, self._lease, renew, holding)
        except BaseException:
            with self._lock:  # record them with the next cycle
                self._settled[:0] = settled
            raise
        taken: dict[str, list[Claimed]] = {}
        for message in claimed:
            taken.setdefault(message.destination, []).append(message)
        batches: list[list[Claimed]] = []
        with self._lock:
            self.stats.cycles += 1
            self.stats.claimed += len(claimed)
            self.stats.largest_claim = max(self.stats.largest_claim, len(claimed))
            self._more = {name for name, n in wanted.items() if len(taken.get(name, ())) >= n}
            for held in renew:
                if held.id in self._open:
                    message, watch, _ = self._open[held.id]
                    self._open[held.id] = (message, watch, now + self._lease)
            for name, messages in taken.items():
                for message in messages:
                    self._open[message.id] = (message, None, now + self._lease)
                # Spread over the free slots, in order: each slot sends its batch in turn.
                slots = min(free[name], len(messages))
                size = -(-len(messages) // slots)
                for first in range(0, len(messages), size):
                    batches.append(messages[first : first + size])
                    self._busy[name] += 1
                pace = self._paced.get(name)
                if pace is not None:
                    pace.not_before = now + pace.spacing
        for messages in batches:
            assert self._pool is not None
            self._pool.submit(self._send_batch, messages)
        return len(claimed)

    def _work_and_room(self) -> bool:
        """Whether a destination had more due than it took and has a free slot now."""
        now = time.time()
        with self._lock:
            free = self._free_slots(now)
            return any(free.get(name, 0) > 0 for name in self._more)

    def _next_wait(self) -> float:
        """How long the loop may sleep: the poll interval, or less when a pace or a pause
        after a failure ends sooner."""
        now = time.time()
        with self._lock:
            ends = [p.not_before for p in self._paced.values()] + list(self._failing.values())
        later = [end - now for end in ends if end > now]
        return min([POLL_SECONDS, *later]) + 0.01 if later else POLL_SECONDS

    def _end_overdue(self) -> None:
        """End the attempts past their deadline (their connections are shut)."""
        now = time.monotonic()
        with self._lock:
            overdue = [
                watch
                for _, watch, _ in self._open.values()
                if watch is not None and watch.deadline <= now
            ]
        for watch in overdue:
            watch.expire()

    def _watch_deadlines(self) -> None:
        # Apart from the cycles, which may wait for the database: a deadline is a deadline.
        while not self._stop.wait(0.25):
            self._end_overdue()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                log.warning(
                    "dispatcher could not use the outbox, will try again: %s", describe(exc)
                )
                self._more.clear()
            woke = self._wake.wait(self._next_wait())
            if woke and not self._stop.is_set() and not self._work_and_room():
                self._gather()
            self._wake.clear()

    def _gather(self) -> None:
        """Let more wakes come for GATHER_SECONDS, one cycle for them all; but not while a
        destination with more due has a slot free again."""
        deadline = time.monotonic() + GATHER_SECONDS
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or (self._freed.wait(left) and self._work_and_room()):
                return
            self._freed.clear()

    def _held(self, claimed: Claimed) -> tuple[Claimed, Watch | None, float] | None:
        """This claim's entry among the held messages (not a later claim of the message)."""
        entry = self._open.get(claimed.id)
        return entry if entry is not None and entry[0].lease_token == claimed.lease_token else None

    def _send_batch(self, messages: list[Claimed]) -> None:
        """Send a slot's batch in turn, over the slot's connection; give back what is left
        when its time is up, an attempt failed, the destination is paced, or the dispatcher
        stops."""
        name = messages[0].destination
        began = time.monotonic()
        done = 0
        try:
            for claimed in messages:
                if self._stop.is_set() or (done and time.monotonic() - began > BATCH_SECONDS):
                    break
                if done and (name in self._paced or name in self._failing):
                    break
                done += 1
                if not self._deliver(claimed):
                    break
        finally:
            rest = messages[done:]
            with self._lock:
                for claimed in rest:
                    if self._held(claimed) is not None:
                        del self._open[claimed.id]
                        self._settled.append(given_back(claimed))
                self.stats.given_back += len(rest)
                self._busy[name] -= 1
            self._freed.set()
            self._wake.set()

    def _deliver(self, claimed: Claimed) -> bool:
        """Make one attempt and settle it; return whether the batch may go on: the
        destination took the message, or refused this one message for good (a 4xx other
        than 408 and 429 is about the message, not about the destination's health)."""
        settlement: Settlement | None = None
        go_on = False
        name = claimed.destination
        try:
            watch = Watch(time.monotonic() + TOTAL_TIMEOUT)
            with self._lock:
                entry = self._held(claimed)
                if entry is not None:
                    self._open[claimed.id] = (claimed, watch, entry[2])
            began = time.monotonic()
            attempt = send(self._http[name], self._destinations[name], claimed, watch)
            took = time.monotonic() - began
            settlement = self._settlement(claimed, attempt)
            go_on = attempt.sent or not attempt.may_pass
            with self._lock:
                if attempt.sent:
                    last = self._seconds.get(name)
                    self._seconds[name] = took if last is None else 0.8 * last + 0.2 * took
                    self._failing.pop(name, None)
                elif attempt.may_pass and not attempt.rate_limited:  # a 429 is paced instead
                    self._failing[name] = time.time() + FAILURE_PAUSE
        except Exception as exc:
            # A bug must neither keep the slot nor send the message again and again: the
            # attempt counts as failed, and the schedule decides what follows.
            log.exception("dispatcher failed on message %s", claimed.message_id)
            failed = Attempt(status=None, error=f"internal error ({type(exc).__name__})")
            with contextlib.suppress(Exception):
                settlement = self._settlement(claimed, failed)
        finally:
            with self._lock:
                if self._held(claimed) is not None:
                    del self._open[claimed.id]
                if settlement is not None:
                    self._settled.append(settlement)
        return go_on

    def _settlement(self, claimed: Claimed, attempt: Attempt) -> Settlement:
        """Decide what becomes of a message after an attempt: sent, again later, or dead."""
        name = claimed.destination
        now = time.time()
        if attempt.sent:
            self._count(name, "sent", now - claimed.created_at)
            return Settlement(claimed, State.SENT, status=attempt.status, sent_at=now)
        error = attempt.error or "failed"
        limited = attempt.rate_limited
        # The attempts that count against the schedule: not the destination's "slow down".
        failures = claimed.attempts - claimed.rate_limited - (1 if limited else 0)
        why = None
        if not attempt.may_pass:
            why = "refused for good"
        elif limited and now - claimed.waiting_since > self._rate_limit_budget:
            why = f"rate-limited for over {self._rate_limit_budget / 3600:g} h"
        elif not limited and failures > len(self._schedule):
            why = "out of attempts"
        if why is not None:
            log.error(
                "message %s to %s is dead (%s after %d attempts): %s",
                claimed.message_id, name, why, claimed.attempts, error,
            )  # fmt: skip
            self._count(name, "dead")
            return Settlement(
                claimed, State.DEAD, status=attempt.status, error=error, rate_limited=limited
            )
        step = (
            self._schedule[min(max(failures, 1), len(self._schedule)) - 1] if self._schedule else 0
        )
        delay = max(step * random.uniform(0.9, 1.1), attempt.retry_after or 0.0)  # noqa: S311
        if limited:
            self._slow_down(name, attempt.retry_after, now)
        log.warning(
            "message %s to %s failed (%s), attempt %d; next in %.0f s",
            claimed.message_id, name, error, claimed.attempts, delay,
        )  # fmt: skip
        self._count(name, "rate_limited" if limited else "retry")
        return Settlement(
            claimed,
            State.PENDING,
            status=attempt.status,
            error=error,
            next_attempt_at=now + delay,
            rate_limited=limited,
        )

    def _slow_down(self, destination: str, retry_after: float | None, now: float) -> None:
        """Pace a destination that answered 429: nothing before its ``Retry-After``, then
        one message at a time, spaced, for :data:`PACE_SECONDS` after its last 429."""
        wait = retry_after or 0.0
        spacing = min(max(wait, MIN_SPACING), MAX_SPACING)
        with self._lock:
            pace = self._paced.get(destination)
            not_before = now + max(wait, spacing)
            if pace is None:
                self._paced[destination] = Pace(not_before, spacing, now + PACE_SECONDS)
            else:
                pace.not_before = max(pace.not_before, not_before)
                pace.spacing = max(pace.spacing, spacing)
                pace.until = now + PACE_SECONDS
        log.warning(
            "destination %s asked to slow down: one message at a time, %.0f s apart, for %.0f s",
            destination, spacing, PACE_SECONDS,
        )  # fmt: skip

    def _count(self, destination: str, outcome: str, latency: float | None = None) -> None:
        self._metrics.outbox_attempts.labels(destination, outcome).inc()
        if latency is not None:
            self._metrics.outbox_latency.observe(max(0.0, latency))
