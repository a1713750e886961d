"""The ``stripe-meter`` kind: usage as Stripe Billing meter events.

``POST {url}/v1/billing/meter_events``, form-encoded: ``event_name``,
``payload[stripe_customer_id]`` (the room's customer's ``stripe_customer`` in the billing
file), ``payload[value]`` (the rule's ``value``), ``timestamp`` (the event's time) and
``identifier`` (the message's stable id, so Stripe counts a retried message once; the
dispatcher's ``Idempotency-Key`` is the same id). The secret key goes as a Bearer token.
A room no customer with a ``stripe_customer`` owns sends nothing.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from config import ConfigError
from plugnmeet_webhooks.workflows.kinds.usage import meter_value, plain_number
from plugnmeet_webhooks.workflows.reader import env_value
from plugnmeet_webhooks.workflows.rules import NothingToSend

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.reader import Reader
    from plugnmeet_webhooks.workflows.rules import Destination, Rule

PATH = "/v1/billing/meter_events"
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclasses.dataclass(frozen=True, slots=True)
class Meter:
    """A Stripe meter destination's settings: its secret key and the meter's event name."""

    event_name: str
    secret: str = dataclasses.field(repr=False)


class StripeMeterKind:
    """Stripe Billing meter events, one per message."""

    name = "stripe-meter"
    title = "a Stripe meter"
    rule_keys = ("value",)
    secret_keys = ("secret",)
    reads_customers = True
    content_type = "application/x-www-form-urlencoded"

    def settings(self, read: Reader, where: str, env: Mapping[str, str]) -> Meter:
        """Read the secret key (``sk_…`` or a restricted ``rk_…``) and the event name."""
        secret = env_value(
            read.get("secret", str, required=True, hint='"env:STRIPE_API_KEY"'),
            f"{where}.secret",
            env,
        )
        if not re.fullmatch(r"(sk|rk)_[A-Za-z0-9_]{8,}", secret):
            raise ConfigError(
                f"{where}.secret is not a Stripe secret key; use the sk_live_… (or restricted "
                'rk_live_…) key from the Stripe dashboard, e.g. secret = "env:STRIPE_API_KEY".'
            )
        event_name = read.get("event_name", str, required=True, hint='"plugnmeet_minutes"')
        if not _EVENT_NAME.fullmatch(event_name):
            raise ConfigError(
                f"{where}: event_name must be the event name of a Stripe meter: up to 100 "
                'letters, digits, "_", ".", ":" or "-".'
            )
        return Meter(event_name=event_name, secret=secret)

    def body(
        self,
        rule: Rule,
        destination: Destination,
        facts: Facts,
        message_id: str,
        several_tenants: bool,
    ) -> bytes:
        """The meter event, form-encoded."""
        assert isinstance(destination.settings, Meter)
        customer = facts.customer
        if customer is None or not customer.stripe_customer:
            room = facts.event.room.room_id or facts.event.room.sid
            whose = "no customer" if customer is None else f"customer {customer.key!r}"
            raise NothingToSend(
                f"room {room!r} belongs to {whose} with a stripe_customer in the billing file"
            )
        fields = {
            "event_name": destination.settings.event_name,
            "payload[stripe_customer_id]": customer.stripe_customer,
            "payload[value]": plain_number(meter_value(rule, facts)),
            "timestamp": str(facts.when),
            "identifier": message_id,
        }
        return urlencode(fields).encode()

    def headers(
        self, destination: Destination, message_id: str, body: bytes, now: float
    ) -> dict[str, str]:
        """The secret key as a Bearer token."""
        assert destination.secret is not None
        return {"Authorization": f"Bearer {destination.secret}"}

    def url(self, destination: Destination) -> str:
        """The meter events endpoint under the destination's URL (``https://api.stripe.com``)."""
        return destination.url.rstrip("/") + PATH
