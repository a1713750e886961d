"""Rules: which events tell whom, and what they say.

A rules file has destinations (where messages go) and rules (which events send what to
them); :mod:`~plugnmeet_webhooks.workflows.rules_file` reads it into the values below. What
a destination is sent, and how, is its kind's (:mod:`~plugnmeet_webhooks.workflows.kinds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jinja2

from plugnmeet_webhooks.workflows.templates import template_paths

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.kinds import Kind

ONCE_PER = ("event", "session", "participant", "room", "room-day", "day")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where messages go: its name, its kind, its URL, and its kind's settings (``secret``:
    the one its kind signs with, if any). The URL and the secrets are never shown."""

    name: str
    kind: Kind
    url: str = dataclasses.field(repr=False)
    secret: str | None = dataclasses.field(default=None, repr=False)
    settings: object | None = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = f"Destination(name={self.name!r}, kind={self.kind.name!r}"
        if dataclasses.is_dataclass(self.settings):
            hidden = set(self.kind.secret_keys)
            settings = {
                field.name: getattr(self.settings, field.name)
                for field in dataclasses.fields(self.settings)
                if field.name not in hidden
            }
            if settings:
                shown += f", settings={settings!r}"
        return shown + ")"


class NothingToSend(Exception):
    """A kind has nothing to send for this event (a meter event for a room no customer
    owns, say); the message says why, and no message is queued."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of a ``where`` table: a path, an operator, a value."""

    path: str
    operator: str
    value: Any

    def holds(self, found: Any) -> bool:
        """Tell whether the value found at the path passes this test."""
        try:
            return bool(_OPERATIONS[self.operator](found, self.value))
        except TypeError:  # comparing a number with nothing, say: it does not hold
            return False


_OPERATIONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: isinstance(a, str) and b in a,
    "starts_with": lambda a, b: isinstance(a, str) and a.startswith(b),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """Which events a rule takes, what it sends, and to where."""

    name: str
    on: frozenset[str]
    send: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    text: jinja2.Template | None = None
    slack_text: jinja2.Template | None = None  # the same text, sender values plain for chat
    text_source: str = ""
    once_per: str = "event"
    tenant: str | None = None
    value: jinja2.Template | None = None  # a meter's value (usage destinations)
    value_source: str = ""

    @property
    def paths(self) -> frozenset[str]:
        """The context paths the rule reads (to fetch only the ledger facts it needs)."""
        return (
            frozenset(c.path for c in self.conditions)
            | template_paths(self.text_source)
            | template_paths(self.value_source)
        )


@dataclass(frozen=True, slots=True)
class Rules:
    """A whole rules file: its destinations and its rules, by event name."""

    destinations: Mapping[str, Destination]
    rules: tuple[Rule, ...]

    def for_event(self, name: str) -> list[Rule]:
        """Return the rules that take events of this name."""
        return [rule for rule in self.rules if name in rule.on]

    @property
    def events(self) -> frozenset[str]:
        """The event names any rule takes."""
        return frozenset(name for rule in self.rules for name in rule.on)


NO_RULES = Rules(destinations={}, rules=())


def customers_needed(rules: Rules) -> str | None:
    """Say which destination sends per customer when there is no billing file to name them."""
    for destination in rules.destinations.values():
        if destination.kind.reads_customers:
            return (
                f"destinations.{destination.name} ({destination.kind.name}) sends usage for "
                "the customer of each room, which the billing file names; set "
                "PNM_BILLING_FILE (see the README's Billing)."
            )
    return None


def tenant_warnings(rules: Rules, tenants: tuple[str, ...]) -> list[str]:
    """Warn of the rules that hear every tenant's events, when there is more than one."""
    if len(tenants) < 2:
        return []
    return [
        f"rule {rule.name!r} has no tenant, so it takes the events of every tenant "
        f"({', '.join(tenants)}) and its chat messages name the tenant; add "
        f'tenant = "{tenants[0]}" to keep it to one.'
        for rule in rules.rules
        if rule.tenant is None and rule.on
    ]
