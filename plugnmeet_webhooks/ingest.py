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
from plugnmeet_webhooks.storage.events import WEBHOOK, Receipt
from plugnmeet_webhooks.workflows.messages import Workflows


class Ingest:
    """Apply stored events to the ledger with one registry of handlers, then their rules."""

    def __init__(self, registry: Registry, workflows: Workflows) -> None:
        self.registry = registry
        self.workflows = workflows
        self.queued = 0  # messages queued so far (read after a batch, to wake the dispatcher)

    def apply(
        self, conn: Connection, payload: dict[str, Any], receipt: Receipt, *, notify: bool = True
    ) -> None:
        """Normalise a parsed body, run its handler and the ledger writes it asked for; then,
        when ``notify``, queue the messages its rules make (in the same transaction)."""
        event = normalize(payload)
        check_times(event, receipt.received_at)
        ctx = Context(
            event_key=receipt.event_key, received_at=receipt.received_at, source=receipt.source
        )
        run(conn, self.registry.plan(event, ctx), receipt.tenant)
        if notify:
            self.queued += self.workflows.enqueue(conn, event, receipt)

    def apply_delivery(self, conn: Connection, delivery: Delivery) -> None:
        """Apply a delivery its batch has just inserted (its body is parsed already)."""
        stored = delivery.stored
        # Facts from the API are told of in one summary, not one message each.
        self.apply(conn, delivery.payload, stored.receipt, notify=stored.source == WEBHOOK)

    def apply_stored(
        self, conn: Connection, body: bytes, receipt: Receipt, *, notify: bool = False
    ) -> None:
        """Apply a stored raw body again (replays, rebuilds); its rules send nothing unless
        ``notify`` (``replay --notify``: a message queued before is not queued again; facts
        from the API never send)."""
        self.apply(conn, json.loads(body), receipt, notify=notify and receipt.source == WEBHOOK)
