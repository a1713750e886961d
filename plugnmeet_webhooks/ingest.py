"""From a stored event to ledger rows: normalise it, let its handler plan, run the writes.

The webhook route hands a :class:`~plugnmeet_webhooks.storage.batch.Delivery` to the group
committer; the batch that stores the event calls :meth:`Ingest.apply_delivery` in the same
transaction. Replays call :meth:`Ingest.apply_stored` on bodies read back from the table.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from plugnmeet_webhooks.handler_registry import Context, Registry
from plugnmeet_webhooks.ledger.writes import run
from plugnmeet_webhooks.normalize import check_times, normalize
from plugnmeet_webhooks.storage.batch import Delivery
from plugnmeet_webhooks.storage.events import WEBHOOK
from plugnmeet_webhooks.workflows.messages import Workflows


class Ingest:
    """Apply stored events to the ledger with one registry of handlers, then their rules."""

    def __init__(self, registry: Registry, workflows: Workflows) -> None:
        self.registry = registry
        self.workflows = workflows
        self.queued = 0  # messages queued so far (read after a batch, to wake the dispatcher)

    def apply(
        self,
        conn: Connection,
        payload: dict[str, Any],
        event_key: str,
        received_at: float,
        tenant: str,
        *,
        notify: bool = True,
        source: str = WEBHOOK,
    ) -> None:
        """Normalise a parsed body, run its handler and the ledger writes it asked for; then,
        when ``notify``, queue the messages its rules make (in the same transaction).
        ``source`` says where the body came from: a delivery, or the plugNmeet API."""
        event = normalize(payload)
        check_times(event, received_at)
        ctx = Context(event_key=event_key, received_at=received_at, source=source)
        run(conn, self.registry.plan(event, ctx), tenant)
        if notify:
            self.queued += self.workflows.enqueue(
                conn, event, tenant=tenant, event_key=event_key, received_at=received_at
            )

    def apply_delivery(self, conn: Connection, delivery: Delivery) -> None:
        """Apply a delivery its batch has just inserted (its body is parsed already)."""
        stored = delivery.stored
        self.apply(
            conn,
            delivery.payload,
            stored.dedupe_key,
            stored.received_at,
            stored.tenant,
            notify=stored.source == WEBHOOK,  # facts from the API are told of in one summary
            source=stored.source,
        )

    def apply_stored(
        self,
        conn: Connection,
        body: bytes,
        event_key: str,
        received_at: float,
        tenant: str,
        source: str = WEBHOOK,
        *,
        notify: bool = False,
    ) -> None:
        """Apply a stored raw body again (replays, rebuilds); its rules send nothing unless
        ``notify`` (``replay --notify``: a message queued before is not queued again; facts
        from the API never send)."""
        self.apply(
            conn,
            json.loads(body),
            event_key,
            received_at,
            tenant,
            notify=notify and source == WEBHOOK,
            source=source,
        )
