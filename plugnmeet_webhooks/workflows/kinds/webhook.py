"""The ``webhook`` kind: any HTTP service gets the event as JSON, signed per Standard
Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from standardwebhooks.webhooks import Webhook

from plugnmeet_webhooks.ledger.periods import iso

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.rules import Destination, Rule


def body(rule: Rule, facts: Facts) -> dict[str, Any]:
    """The event, the rule's text and the ledger's facts, as a Standard Webhooks payload."""
    event = facts.event
    data: dict[str, Any] = {"tenant": facts.tenant, "rule": rule.name}
    if rule.text is not None:
        data["text"] = rule.text.render(facts.context)
    data["event"] = dataclasses.asdict(event)
    if event.room.sid:
        data["session"] = facts.session.as_dict()
    if event.room_artifact is not None:
        data["room_ai_cost_today"] = facts.room.ai_cost_today
    if facts.reconciled is not None:
        data["reconciled"] = dataclasses.asdict(facts.reconciled)
    return {
        "type": f"plugnmeet.{event.event}",
        "timestamp": iso(facts.when),
        "data": data,
    }


def headers(destination: Destination, message_id: str, body: bytes, now: float) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with the destination's secret."""
    assert destination.secret is not None
    stamp = datetime.fromtimestamp(int(now), UTC)
    signature = Webhook(destination.secret).sign(message_id, stamp, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
