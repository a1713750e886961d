"""The ``webhook`` kind: any HTTP service gets the event as JSON, signed per Standard
Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from standardwebhooks.webhooks import Webhook

from config import ConfigError
from plugnmeet_webhooks.ledger.periods import iso
from plugnmeet_webhooks.workflows.reader import env_value

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.reader import Reader
    from plugnmeet_webhooks.workflows.rules import Destination, Rule


@dataclasses.dataclass(frozen=True, slots=True)
class Signing:
    """A webhook destination's settings: the Standard Webhooks secret it signs with."""

    secret: str = dataclasses.field(repr=False)


class WebhookKind:
    """A signed webhook: the event, the rule's text and the ledger's facts, as JSON."""

    name = "webhook"
    title = "a webhook"
    rule_keys = ()
    secret_keys = ("secret",)
    reads_customers = False
    content_type = "application/json"

    def settings(self, read: Reader, where: str, env: Mapping[str, str]) -> Signing:
        """Read the secret (required): a ``whsec_`` Standard Webhooks secret."""
        hint = '"env:NAME" (a whsec_... secret)'
        secret = env_value(
            read.get("secret", str, required=True, hint=hint), f"{where}.secret", env
        )
        try:
            Webhook(secret)
            valid = secret.startswith("whsec_") and len(secret) > 20
        except Exception:  # the library's base64 errors
            valid = False
        if not valid:
            raise ConfigError(
                f"{where}.secret is not a Standard Webhooks secret; use whsec_ followed by "
                "base64, e.g. from: echo whsec_$(openssl rand -base64 32)."
            )
        return Signing(secret)

    def body(
        self,
        rule: Rule,
        destination: Destination,
        facts: Facts,
        message_id: str,
        several_tenants: bool,
    ) -> bytes:
        """The payload, as compact JSON."""
        payload = _payload(rule, facts)
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(
        self, destination: Destination, message_id: str, body: bytes, now: float
    ) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt, signed with the destination's secret."""
        assert destination.secret is not None
        stamp = datetime.fromtimestamp(int(now), UTC)
        signature = Webhook(destination.secret).sign(message_id, stamp, body.decode())
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now)),
            "webhook-signature": signature,
        }

    def url(self, destination: Destination) -> str:
        """The URL as the rules file gives it."""
        return destination.url


def _payload(rule: Rule, facts: Facts) -> dict[str, Any]:
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
