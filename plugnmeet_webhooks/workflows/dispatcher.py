"""The dispatcher: send what the outbox holds, retry what may pass, give up on what cannot.

Each destination has its own few sending slots, so a slow or dead one holds only its own
messages. A message is claimed under a lease, sent once with its stable id, and settled:
sent; due again after a back-off (connection errors, timeouts, 429 and 5xx, ``Retry-After``
honoured); or dead (any other answer, or the last attempt spent). A dispatcher that dies
mid-send leaves its messages to be claimed again when their leases run out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import urllib3
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import DEFAULT_OUTBOX_RETRIES
from plugnmeet_webhooks.metrics import Metrics
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.outbox import Claimed, Settlement, State, cycle, due_destinations
from plugnmeet_webhooks.workflows.rules import Destination

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
MAX_RETRY_AFTER = 24 * 3600.0
SLOTS_PER_DESTINATION = 4
POLL_SECONDS = 1.0  # a cycle at least this often
GATHER_SECONDS = 0.25  # after a wake, for more wakes to come: one transaction for them all
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


def retry_after(value: str | None, now: float) -> float | None:
    """Read a ``Retry-After`` header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def headers_for(destination: Destination, claimed: Claimed, now: float) -> dict[str, str]:
    """The headers of one attempt: the message's id on every one, signed for a webhook."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Idempotency-Key": claimed.message_id,
    }
    if destination.kind == "webhook":
        stamp = datetime.fromtimestamp(int(now), UTC)
        signature = destination.signer().sign(claimed.message_id, stamp, claimed.body.decode())
        headers |= {
            "webhook-id": claimed.message_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signature,
        }
    return headers


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


def send(http: urllib3.PoolManager, destination: Destination, claimed: Claimed) -> Attempt:
    """POST one message to its destination, once."""
    now = time.time()
    try:
        response = http.request(
            "POST",
            destination.url,
            body=claimed.body,
            headers=headers_for(destination, claimed, now),
            timeout=urllib3.Timeout(
                connect=CONNECT_TIMEOUT, read=TOTAL_TIMEOUT, total=TOTAL_TIMEOUT
            ),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        return Attempt(status=None, error=_failure(exc))
    try:
        response.read(64 * 1024, decode_content=False)  # enough to free the connection
    except urllib3.exceptions.HTTPError:
        pass
    finally:
        response.release_conn()
    status = response.status
    if 200 <= status < 300:
        return Attempt(status=status)
    return Attempt(
        status=status,
        error=f"HTTP {status}",
        retry_after=retry_after(response.headers.get("Retry-After"), now),
    )


class Dispatcher:
    """Send the outbox's messages from background threads until stopped.

    One thread runs cycles: each records the attempts that ended and claims what is due, in
    one transaction, then hands the claimed messages to the sending threads. Cycles follow
    a wake (a delivery queued messages, a send ended) after a short gathering pause, or the
    poll interval; with nothing to record and nothing due, a cycle writes nothing.
    """

    def __init__(
        self,
        engine: Engine,
        destinations: Mapping[str, Destination],
        *,
        schedule: tuple[float, ...] = DEFAULT_OUTBOX_RETRIES,
        lease: float = 60.0,
        metrics: Metrics,
    ) -> None:
        self._engine = engine
        self._destinations = dict(destinations)
        self._schedule = schedule
        self._lease = lease
        self._metrics = metrics
        self._busy: Counter[str] = Counter()
        self._settled: list[Settlement] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http = urllib3.PoolManager(
            num_pools=max(4, len(self._destinations)), maxsize=SLOTS_PER_DESTINATION
        )

    def start(self) -> Dispatcher:
        """Start sending in the background."""
        if self._thread is None and self._destinations:
            self._pool = ThreadPoolExecutor(
                max_workers=SLOTS_PER_DESTINATION * len(self._destinations),
                thread_name_prefix="pnm-send",
            )
            self._thread = threading.Thread(target=self._run, name="pnm-dispatcher", daemon=True)
            self._thread.start()
            log.info("dispatcher started for %d destinations", len(self._destinations))
        return self

    def wake(self) -> None:
        """Look for due messages now (new ones were just committed)."""
        self._wake.set()

    def stop(self, timeout: float = TOTAL_TIMEOUT + 1) -> None:
        """Stop claiming, wait up to ``timeout`` for the sends in flight, record them.

        A send cut short leaves its message under a lease; it is sent again once the lease
        runs out, with the same id.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + timeout
            while self._in_flight() and time.monotonic() < deadline:
                time.sleep(0.05)
            try:
                self.run_once(claim=False)
            except SQLAlchemyError as exc:
                log.warning("dispatcher could not record its last attempts: %s", describe(exc))
            log.info("dispatcher stopped")

    def _in_flight(self) -> int:
        with self._lock:
            return sum(self._busy.values())

    def run_once(self, *, claim: bool = True) -> int:
        """Record the attempts that ended and claim what is due; return how many were claimed."""
        with self._lock:
            settled, self._settled = self._settled, []
            free = {name: SLOTS_PER_DESTINATION - self._busy[name] for name in self._destinations}
        wanted = {name: n for name, n in free.items() if n > 0} if claim else {}
        if wanted:
            due = due_destinations(self._engine, list(wanted))
            wanted = {name: n for name, n in wanted.items() if name in due}
        if not settled and not wanted:
            return 0
        try:
            claimed = cycle(self._engine, settled, wanted, self._lease)
        except BaseException:
            with self._lock:  # record them with the next cycle
                self._settled[:0] = settled
            raise
        for message in claimed:
            with self._lock:
                self._busy[message.destination] += 1
            assert self._pool is not None
            self._pool.submit(self._deliver, message)
        return len(claimed)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                log.warning(
                    "dispatcher could not use the outbox, will try again: %s", describe(exc)
                )
            if self._wake.wait(POLL_SECONDS) and not self._stop.is_set():
                time.sleep(GATHER_SECONDS)
            self._wake.clear()

    def _deliver(self, claimed: Claimed) -> None:
        settlement: Settlement | None = None
        try:
            attempt = send(self._http, self._destinations[claimed.destination], claimed)
            settlement = self._settlement(claimed, attempt)
        except Exception:  # a bug must not keep the slot: the lease runs out, it is sent again
            log.exception("dispatcher failed on message %s", claimed.message_id)
        finally:
            with self._lock:
                self._busy[claimed.destination] -= 1
                if settlement is not None:
                    self._settled.append(settlement)
            self._wake.set()

    def _settlement(self, claimed: Claimed, attempt: Attempt) -> Settlement:
        """Decide what becomes of a message after an attempt: sent, again later, or dead."""
        name = claimed.destination
        now = time.time()
        if attempt.sent:
            self._count(name, "sent", now - claimed.created_at)
            return Settlement(claimed, State.SENT, status=attempt.status, sent_at=now)
        error = attempt.error or "failed"
        if not attempt.may_pass or claimed.attempts > len(self._schedule):
            why = "refused for good" if not attempt.may_pass else "out of attempts"
            log.error(
                "message %s to %s is dead (%s after %d attempts): %s",
                claimed.message_id, name, why, claimed.attempts, error,
            )  # fmt: skip
            self._count(name, "dead")
            return Settlement(claimed, State.DEAD, status=attempt.status, error=error)
        delay = self._schedule[claimed.attempts - 1] * random.uniform(0.9, 1.1)  # noqa: S311
        if attempt.retry_after is not None:
            delay = attempt.retry_after
        log.warning(
            "message %s to %s failed (%s), attempt %d; next in %.0f s",
            claimed.message_id, name, error, claimed.attempts, delay,
        )  # fmt: skip
        self._count(name, "retry")
        return Settlement(
            claimed, State.PENDING, status=attempt.status, error=error, next_attempt_at=now + delay
        )

    def _count(self, destination: str, outcome: str, latency: float | None = None) -> None:
        self._metrics.outbox_attempts.labels(destination, outcome).inc()
        if latency is not None:
            self._metrics.outbox_latency.observe(max(0.0, latency))
