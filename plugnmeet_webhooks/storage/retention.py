"""Retention: raw bodies older than ``PNM_RETENTION_DAYS`` are removed; the events stay.

A raw body holds names and user ids. Pruning keeps the event's row (its id, type, room,
times, digest) and every ledger row it gave, so minutes and costs stay as they were; only a
replay or a rebuild of that event is no longer possible. The outbox's messages of the same
age go the same way: sent ones are deleted, the others keep their row without their body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.events import EventFilter, count_matching, each_batch, events

log = logging.getLogger(__name__)

DAY = 24 * 3600


def cutoff(days: int) -> float:
    """Return the receipt time before which bodies are older than ``days`` days."""
    return time.time() - days * DAY


def count_prunable(engine: Engine, before: float) -> int:
    """Count the events received before ``before`` that still have their raw body."""
    return count_matching(engine, EventFilter(until=before))


def prune_bodies(
    engine: Engine,
    before: float,
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Remove the raw bodies of events received before ``before``, in short transactions."""

    def remove(conn: Connection, rows: list[Any]) -> None:
        ids = [row.id for row in rows]
        conn.execute(
            events.update().where(events.c.id.in_(ids)).values(body=b"", pruned_at=time.time())
        )
        if progress is not None:
            progress(len(ids))

    return each_batch(engine, EventFilter(until=before), (), remove, batch_size=batch_size)


def prune(
    engine: Engine, before: float, *, progress: Callable[[int], None] | None = None
) -> tuple[int, int]:
    """Prune what was received or made before ``before``: the events' raw bodies, then the
    outbox's messages; return how many of each."""
    return prune_bodies(engine, before, progress=progress), outbox.prune(engine, before)


class Pruner:
    """A background thread that prunes old raw bodies once an interval, until stopped."""

    def __init__(
        self,
        engine: Engine,
        days: int,
        *,
        interval: float = 3600.0,
        on_pruned: Callable[[int], None] | None = None,
    ) -> None:
        self._engine = engine
        self._days = days
        self._interval = interval
        self._on_pruned = on_pruned
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; it prunes at once, then once an interval."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pnm-pruner", daemon=True)
            self._thread.start()
            log.info("retention: raw bodies older than %d days are pruned", self._days)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, waiting at most ``timeout`` seconds for a prune in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> int:
        """Prune what is due now; return how many event bodies went."""
        pruned, messages = prune(self._engine, cutoff(self._days))
        if pruned:
            log.info("retention: pruned the raw bodies of %d events", pruned)
            if self._on_pruned is not None:
                self._on_pruned(pruned)
        if messages:
            log.info("retention: pruned %d outbox messages", messages)
        return pruned

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:  # the next round tries again
                log.warning("retention: pruning failed, will try again: %s", describe(exc))
            self._stop.wait(self._interval)
