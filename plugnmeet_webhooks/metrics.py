"""Prometheus metrics, one set per runtime, shared by gunicorn's workers through files."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
        self.latency = Histogram(
            "pnm_webhook_request_seconds",
            "Time from receiving a delivery to answering it.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """Return the metrics page and its content type, merged across gunicorn's workers."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def event_label(name: str, known: frozenset[str]) -> str:
    """Label an event type, folding names no handler knows into ``other`` (bounded series)."""
    return name if name in known else "other"
