"""Prometheus metrics, shared by every gunicorn worker through the multiprocess directory."""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DELIVERIES = Counter(
    "pnm_webhook_deliveries",
    "Webhook deliveries answered, by outcome (accepted, duplicate, or the refusal) and, for a "
    "token that failed, the class of the failure.",
    ["outcome", "reason"],
)
EVENTS = Counter("pnm_webhook_events", "Events stored, by event type.", ["event"])
HANDLER_FAILURES = Counter(
    "pnm_webhook_handler_failures",
    "Stored events whose handler raised, by event type (see 'flask replay --failed').",
    ["event"],
)
LATENCY = Histogram(
    "pnm_webhook_request_seconds",
    "Time from receiving a delivery to answering it.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def event_label(name: str, known: frozenset[str]) -> str:
    """Label an event type, folding names no handler knows into ``other`` (bounded series)."""
    return name if name in known else "other"


def render() -> tuple[bytes, str]:
    """Return the metrics page and its content type, merged across workers when under gunicorn."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
