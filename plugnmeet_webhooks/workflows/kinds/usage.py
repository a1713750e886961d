"""What the usage kinds (``stripe-meter``, ``cloudevents``) share: a rule's meter value.

A rule that sends usage says what is counted with ``value``, a template such as
``"{{ session.billable_minutes }}"``; it must come to a number of 0 or more.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from plugnmeet_webhooks.workflows.rules import NothingToSend

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.rules import Rule

MAX_VALUE = Decimal(10) ** 15


def meter_value(rule: Rule, facts: Facts) -> Decimal:
    """The rule's ``value`` for this event, a number of 0 or more; nothing to send when it
    comes to nothing (a session the ledger does not know yet), an error when not a number."""
    assert rule.value is not None  # a usage kind lists "value" in its rule_keys
    text = rule.value.render(facts.context).strip()
    if text in ("", "None"):
        raise NothingToSend(f"the value {rule.value_source!r} comes to nothing for this event")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"the value is {text[:40]!r}, not a number") from None
    if not value.is_finite() or value < 0 or value > MAX_VALUE:
        raise ValueError(f"the value is {text[:40]!r}; a meter counts numbers from 0 up")
    return value


def plain_number(value: Decimal) -> str:
    """A number as a meter takes it: 43, 0.5 (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")
