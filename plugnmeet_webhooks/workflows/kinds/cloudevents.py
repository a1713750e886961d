"""The ``cloudevents`` kind: usage as a CloudEvents 1.0 event, in structured JSON mode.

``application/cloudevents+json`` with ``specversion`` 1.0, ``id`` (the message's stable id,
so a retried message is the same event), ``source`` and ``type`` (from the destination),
``subject`` (the room's customer in the billing file, or the room id when no customer owns
it), ``time`` (the event's, RFC 3339) and ``data``: the rule's ``value`` and what it is of.
OpenMeter and other metering services ingest it; an optional token goes as a Bearer token.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config import ConfigError
from plugnmeet_webhooks.ledger.periods import iso
from plugnmeet_webhooks.workflows.kinds.usage import meter_value
from plugnmeet_webhooks.workflows.reader import env_value

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.reader import Reader
    from plugnmeet_webhooks.workflows.rules import Destination, Rule

_ATTRIBUTE = re.compile(r"\S{1,200}")


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """A CloudEvents destination's settings: the events' source and type, and a token."""

    source: str
    type: str
    secret: str | None = dataclasses.field(default=None, repr=False)


class CloudEventsKind:
    """One CloudEvents event per message."""

    name = "cloudevents"
    title = "a CloudEvents endpoint"
    rule_keys = ("value",)
    secret_keys = ("secret",)
    reads_customers = False
    content_type = "application/cloudevents+json; charset=utf-8"

    def settings(self, read: Reader, where: str, env: Mapping[str, str]) -> Source:
        """Read the source and type (required) and the token (optional)."""
        found = {}
        for key, hint in (
            ("source", '"plugnmeet-webhooks"'),
            ("type", '"plugnmeet.session.minutes"'),
        ):
            value = read.get(key, str, required=True, hint=hint)
            if not _ATTRIBUTE.fullmatch(value):
                raise ConfigError(
                    f"{where}: {key} must be 1 to 200 characters without spaces, like "
                    f"{key} = {hint}."
                )
            found[key] = value
        raw = read.get("secret", str, hint='"env:OPENMETER_TOKEN"')
        secret = None if raw is None else env_value(raw, f"{where}.secret", env)
        return Source(source=found["source"], type=found["type"], secret=secret)

    def body(
        self,
        rule: Rule,
        destination: Destination,
        facts: Facts,
        message_id: str,
        several_tenants: bool,
    ) -> bytes:
        """The event, as compact JSON."""
        assert isinstance(destination.settings, Source)
        value = meter_value(rule, facts)
        event = facts.event
        room = event.room
        customer = facts.customer
        data: dict[str, Any] = {
            "value": int(value) if value == value.to_integral_value() else float(value),
            "event": event.event,
            "tenant": facts.tenant,
            "room_id": room.room_id or None,
            "room_sid": room.sid or None,
            "customer": customer.key if customer else None,
            "rule": rule.name,
        }
        if rule.text is not None:
            data["text"] = rule.text.render(facts.context)
        payload = {
            "specversion": "1.0",
            "id": message_id,
            "source": destination.settings.source,
            "type": destination.settings.type,
            "subject": customer.key if customer else (room.room_id or room.sid),
            "time": iso(facts.when),
            "datacontenttype": "application/json",
            "data": data,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(
        self, destination: Destination, message_id: str, body: bytes, now: float
    ) -> dict[str, str]:
        """The token as a Bearer token, when there is one."""
        return {"Authorization": f"Bearer {destination.secret}"} if destination.secret else {}

    def url(self, destination: Destination) -> str:
        """The URL as the rules file gives it."""
        return destination.url
