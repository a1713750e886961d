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
from typing import Any

import urllib3
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from config import DEFAULT_OUTBOX_RETRIES
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.outbox import (
    Claimed,
    claim,
    has_due,
    mark_dead,
    mark_retry,
    mark_sent,
)
from plugnmeet_webhooks.workflows.rules import Destination

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.0
TOTAL_TIMEOUT = 10.0
MAX_RETRY_AFTER = 24 * 3600.0
SLOTS_PER_DESTINATION = 4
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
    """Send the outbox's messages from background threads until stopped."""

    def __init__(
        self,
        engine: Engine,
        destinations: Mapping[str, Destination],
        *,
        schedule: tuple[float, ...] = DEFAULT_OUTBOX_RETRIES,
        lease: float = 60.0,
        poll: float = 1.0,
        slots: int = SLOTS_PER_DESTINATION,
        metrics: Any = None,
    ) -> None:
        self._engine = engine
        self._destinations = dict(destinations)
        self._schedule = schedule
        self._lease = lease
        self._poll = poll
        self._slots = slots
        self._metrics = metrics
        self._busy: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http = urllib3.PoolManager(num_pools=max(4, len(self._destinations)), maxsize=slots)

    def start(self) -> Dispatcher:
        """Start sending in the background."""
        if self._thread is None and self._destinations:
            self._pool = ThreadPoolExecutor(
                max_workers=self._slots * len(self._destinations), thread_name_prefix="pnm-send"
            )
            self._thread = threading.Thread(target=self._run, name="pnm-dispatcher", daemon=True)
            self._thread.start()
            log.info("dispatcher started for %d destinations", len(self._destinations))
        return self

    def wake(self) -> None:
        """Look for due messages now (new ones were just committed)."""
        self._wake.set()

    def stop(self, timeout: float = TOTAL_TIMEOUT + 1) -> None:
        """Stop claiming, and wait up to ``timeout`` for the sends in flight.

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
            log.info("dispatcher stopped")

    def _in_flight(self) -> int:
        with self._lock:
            return sum(self._busy.values())

    def run_once(self) -> int:
        """Claim what is due for every destination with a free slot; return how many."""
        started = 0
        for name in self._destinations:
            with self._lock:
                free = self._slots - self._busy[name]
            if free <= 0 or not has_due(self._engine, name):
                continue
            for claimed in claim(self._engine, name, free, self._lease):
                with self._lock:
                    self._busy[name] += 1
                assert self._pool is not None
                self._pool.submit(self._deliver, claimed)
                started += 1
        return started

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                log.warning(
                    "dispatcher could not read the outbox, will try again: %s", describe(exc)
                )
            self._wake.wait(self._poll)
            self._wake.clear()

    def _deliver(self, claimed: Claimed) -> None:
        destination = self._destinations[claimed.destination]
        try:
            attempt = send(self._http, destination, claimed)
            outcome = self._settle(claimed, attempt)
            if self._metrics is not None:
                self._metrics.outbox_attempts.labels(claimed.destination, outcome).inc()
                if outcome == "sent":
                    self._metrics.outbox_latency.observe(max(0.0, time.time() - claimed.created_at))
        except SQLAlchemyError as exc:  # the lease runs out and it is sent again
            log.warning("dispatcher could not record an attempt: %s", describe(exc))
        except Exception:  # a bug must not kill the sending thread's slot
            log.exception("dispatcher failed on message %s", claimed.message_id)
        finally:
            with self._lock:
                self._busy[claimed.destination] -= 1
            self._wake.set()

    def _settle(self, claimed: Claimed, attempt: Attempt) -> str:
        """Record the attempt; return sent, retry or dead."""
        name = claimed.destination
        if attempt.sent:
            assert attempt.status is not None
            mark_sent(self._engine, claimed, attempt.status)
            return "sent"
        error = attempt.error or "failed"
        if not attempt.may_pass or claimed.attempts > len(self._schedule):
            why = "refused for good" if not attempt.may_pass else "out of attempts"
            mark_dead(self._engine, claimed, attempt.status, error)
            log.error(
                "message %s to %s is dead (%s after %d attempts): %s",
                claimed.message_id, name, why, claimed.attempts, error,
            )  # fmt: skip
            return "dead"
        delay = self._schedule[claimed.attempts - 1] * random.uniform(0.9, 1.1)  # noqa: S311
        if attempt.retry_after is not None:
            delay = attempt.retry_after
        mark_retry(self._engine, claimed, time.time() + delay, attempt.status, error)
        log.warning(
            "message %s to %s failed (%s), attempt %d; next in %.0f s",
            claimed.message_id, name, error, claimed.attempts, delay,
        )  # fmt: skip
        return "retry"
