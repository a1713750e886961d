"""Prometheus metrics, one set per runtime, shared by gunicorn's workers through files."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
T = TypeVar("T")


class Metrics:
    """The service's counters and histograms, registered on their own registry.

    Under gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set) every worker writes its values to
    files there, and :meth:`render` adds them up; otherwise the page shows this process.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "pnm_webhook_deliveries",
            "Webhook deliveries answered, by outcome (accepted, duplicate, or the refusal) and, "
            "for a token that failed, the class of the failure.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "pnm_webhook_events", "Events stored, by event type.", ["event"], registry=self.registry
        )
        self.handler_failures = Counter(
            "pnm_webhook_handler_failures",
            "Stored events whose handler raised, by event type (see 'flask replay --failed').",
            ["event"],
            registry=self.registry,
        )
        self.pruned = Counter(
            "pnm_retention_pruned",
            "Raw bodies removed for being older than PNM_RETENTION_DAYS.",
            registry=self.registry,
        )
        self.outbox_attempts = Counter(
            "pnm_outbox_attempts",
            "Attempts to send an outbox message, by destination and outcome (sent, retry, dead).",
            ["destination", "outcome"],
            registry=self.registry,
        )
        self.outbox_latency = Histogram(
            "pnm_outbox_delivery_seconds",
            "Time from queueing a message to its destination taking it.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000),
            registry=self.registry,
        )
        self.reconcile_passes = Counter(
            "pnm_reconcile_passes",
            "Reconciliation passes over a plugNmeet server, by outcome (completed, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.reconcile_repairs = Counter(
            "pnm_reconcile_repairs",
            "What reconciliation repaired from plugNmeet's API, by kind (closed, discovered, "
            "artifact, recording): each one is a delivery that was lost.",
            ["kind"],
            registry=self.registry,
        )
        self.plugnmeet_api_errors = Counter(
            "pnm_plugnmeet_api_errors",
            "Calls to plugNmeet's API that failed, by endpoint.",
            ["endpoint"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pnm_webhook_request_seconds",
            "Time from receiving a delivery to answering it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )

    def render(self, *extra: Collector) -> tuple[bytes, str]:
        """Return the metrics page and its content type, merged across gunicorn's workers.

        ``extra`` collectors (read from the database at each scrape) join the page.
        """
        registry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        page = generate_latest(registry)
        if extra:
            once = CollectorRegistry()
            for collector in extra:
                once.register(collector)
            page += generate_latest(once)
        return page, CONTENT_TYPE_LATEST


def event_label(name: str, known: frozenset[str]) -> str:
    """Label an event type, folding names no handler knows into ``other`` (bounded series)."""
    return name if name in known else "other"


@dataclass(frozen=True, slots=True)
class OutboxFigures:
    """What the metrics say of the outbox: messages by state, the creation time of the
    oldest waiting one, and the messages waiting per destination."""

    by_state: dict[str, int]
    oldest_waiting: float | None
    backlog: dict[str, int]


class CachedRead(Generic[T]):
    """A read of the database kept for a few seconds, so that scrapes of several workers,
    or several scrapers, do not each count a large table."""

    def __init__(
        self,
        read: Callable[[], T],
        seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: tuple[float, T] | None = None

    def __call__(self) -> T:
        """Return the figures, read again only when the kept ones are older than allowed."""
        with self._lock:
            now = self._clock()
            if self._kept is None or now - self._kept[0] >= self._seconds:
                self._kept = (now, self._read())
            return self._kept[1]


class OutboxCollector(Collector):
    """The outbox's messages by state, its backlog per destination and the age of the oldest
    waiting message, read at a scrape (through a :class:`CachedRead`)."""

    def __init__(self, read: Callable[[], OutboxFigures], destinations: Iterable[str]) -> None:
        self._read = read
        self._destinations = tuple(destinations)

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; nothing when the database does not answer (the page still does)."""
        try:
            figures = self._read()
        except Exception:  # a scrape must not fail for the database
            return
        states = GaugeMetricFamily(
            "pnm_outbox_messages", "Outbox messages, by state.", labels=["state"]
        )
        for state, count in figures.by_state.items():
            states.add_metric([state], count)
        yield states
        backlog = GaugeMetricFamily(
            "pnm_outbox_backlog",
            "Messages waiting to be sent (pending or being sent), per destination.",
            labels=["destination"],
        )
        # Every configured destination has a series, 0 when nothing waits; names the rules
        # file no longer has are left out (a bounded set of series).
        for name in self._destinations:
            backlog.add_metric([name], figures.backlog.get(name, 0))
        yield backlog
        oldest = figures.oldest_waiting
        age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
        yield GaugeMetricFamily(
            "pnm_outbox_oldest_pending_seconds",
            "Age of the oldest message waiting to be sent (0 when none waits).",
            value=age,
        )


@dataclass(frozen=True, slots=True)
class LastPass:
    """A tenant's last completed reconciliation pass: when it finished, what it left."""

    finished_at: float
    unresolved: int


class ReconcileCollector(Collector):
    """Per tenant, the seconds since its last completed reconciliation pass and what that
    pass could not resolve, read at a scrape."""

    def __init__(self, read: Callable[[], dict[str, LastPass]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges; a tenant before its first pass has none, and nothing is yielded
        when the database does not answer (the page still is)."""
        try:
            last = self._read()
        except Exception:  # a scrape must not fail for the database
            return
        age = GaugeMetricFamily(
            "pnm_reconcile_last_pass_age_seconds",
            "Seconds since the tenant's last completed reconciliation pass finished.",
            labels=["tenant"],
        )
        unresolved = GaugeMetricFamily(
            "pnm_reconcile_unresolved",
            "What the tenant's last completed pass could not resolve (sessions, facts).",
            labels=["tenant"],
        )
        now = time.time()
        for tenant, done in sorted(last.items()):
            age.add_metric([tenant], max(0.0, now - done.finished_at))
            unresolved.add_metric([tenant], done.unresolved)
        yield age
        yield unresolved
