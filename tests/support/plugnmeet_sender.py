"""A sender that delivers webhooks the way a plugNmeet server does.

One worker per room sends that room's deliveries in order, over a connection it keeps
open between deliveries. A delivery has three attempts: after a connection error, a 429 or
a 5xx other than 501 it waits 1 s, then 2 s (or the ``Retry-After`` of a 429 or 503) and
tries again; after the third it is dropped. There is no overall timeout: a receiver that
has accepted a connection is waited for (here up to ``STALL`` seconds, so that a test that
fails still ends).
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from validation import sign

WAITS = (1.0, 2.0)  # before the second and the third attempt
STALL = 60.0


@dataclass
class Delivery:
    """One delivery and what each of its attempts met: a status, or an error's name."""

    event_id: str
    body: bytes
    attempts: list[int | str] = field(default_factory=list)

    @property
    def status(self) -> int | str | None:
        return self.attempts[-1] if self.attempts else None


def _retried(status: int | str) -> bool:
    if isinstance(status, str):
        return True  # refused, reset, closed: the sender tries again
    return status == 429 or (status >= 500 and status != 501)


def _wait_before_retry(status: int | str, retry_after: str | None, attempt: int) -> float:
    if status in (429, 503) and retry_after and retry_after.strip().isdigit():
        return float(retry_after)
    return WAITS[attempt]


class RoomWorker(threading.Thread):
    """Send one room's deliveries in order, one every ``interval`` seconds at most."""

    def __init__(
        self, url: str, key: str, secret: str, deliveries: list[Delivery], interval: float
    ):
        super().__init__(daemon=True)
        self.parts = urllib.parse.urlsplit(url)
        self.key, self.secret = key, secret
        self.deliveries = deliveries
        self.interval = interval
        self.connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        started = time.monotonic()
        for n, delivery in enumerate(self.deliveries):
            time.sleep(max(0.0, started + n * self.interval - time.monotonic()))
            self._deliver(delivery)
        if self.connection is not None:
            self.connection.close()

    def _deliver(self, delivery: Delivery) -> None:
        token = sign(delivery.body, self.key, self.secret)
        headers = {"Content-Type": "application/json", "Authorization": token, "Hash-Token": token}
        for attempt in range(len(WAITS) + 1):
            status, retry_after = self._attempt(delivery.body, headers)
            delivery.attempts.append(status)
            if not _retried(status) or attempt == len(WAITS):
                return
            time.sleep(_wait_before_retry(status, retry_after, attempt))

    def _attempt(self, body: bytes, headers: dict[str, str]) -> tuple[int | str, str | None]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                self.parts.hostname, self.parts.port, timeout=STALL
            )
        try:
            self.connection.request("POST", self.parts.path, body, headers)
            response = self.connection.getresponse()
            response.read()
            if response.will_close:
                self._drop()
            return response.status, response.getheader("Retry-After")
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            return type(exc).__name__, None

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def stream(
    url: str,
    key: str,
    secret: str,
    rooms: dict[str, list[Delivery]],
    rate: float,
    *,
    during: Callable[[], None] | None = None,
) -> None:
    """Send every room's deliveries, ``rate`` a second in all, each room in its own worker;
    call ``during`` (in this thread) while they are sent, and return once all have ended."""
    interval = len(rooms) / rate
    workers = [RoomWorker(url, key, secret, items, interval) for items in rooms.values()]
    for worker in workers:
        worker.start()
    if during is not None:
        during()
    for worker in workers:
        worker.join(STALL * 4 + 60)
        assert not worker.is_alive(), "a room's sender did not finish"
