"""From a stored event to the messages its rules make: match, render, queue.

This runs in the transaction that stores the event, after its ledger writes: a rule sees
what the ledger knows after the event (``session.billable_minutes``, the room's AI cost of
the day), and its messages are committed with the event or not at all. Ledger facts are
read only when a rule asks for them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import jinja2
from sqlalchemy import Connection, bindparam, func, select

from plugnmeet_webhooks.billing.billing_file import Billing
from plugnmeet_webhooks.ledger.periods import epoch, iso
from plugnmeet_webhooks.ledger.reports import cost, session_status
from plugnmeet_webhooks.ledger.tables import session_end_column, sessions, usage
from plugnmeet_webhooks.normalize import Event, Room
from plugnmeet_webhooks.storage.events import Receipt
from plugnmeet_webhooks.storage.outbox import Message, enqueue, message_id, queued_already
from plugnmeet_webhooks.storage.sql import compiled, execute
from plugnmeet_webhooks.text import plain
from plugnmeet_webhooks.workflows.context import (
    EVENT_PARTS,
    SESSION_FIELDS,
    Reconciled,
    RoomCustomer,
)
from plugnmeet_webhooks.workflows.rules import Destination, NothingToSend, Rule, Rules

log = logging.getLogger(__name__)


class RoomFacts:
    """The event's room, plus what the ledger knows of it (read on first use)."""

    def __init__(self, room: Room, conn: Connection, tenant: str, day_of: int) -> None:
        self._room = room
        self._conn = conn
        self._tenant = tenant
        self._day_of = day_of

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._room, name)

    @cached_property
    def ai_cost_today(self) -> float:
        """The room's AI cost over the UTC day of the event, this event included."""
        start = epoch(datetime.fromtimestamp(self._day_of, UTC).date())
        params = {
            "tenant": self._tenant, "room_id": self._room.room_id, "start": start,
            "end": start + 86400,
        }  # fmt: skip
        micros = execute(self._conn, compiled(self._conn.dialect, _cost_of_day), params)
        return cost(int(micros.fetchone()[0] or 0)) or 0.0


def _cost_of_day(module: Any) -> Any:
    return select(func.sum(usage.c.cost_micros)).where(
        usage.c.tenant == bindparam("tenant"),
        usage.c.room_id == bindparam("room_id"),
        usage.c.created_at >= bindparam("start"),
        usage.c.created_at < bindparam("end"),
    )


def _session_row(module: Any) -> Any:
    return select(
        *(sessions.c[name] for name in _SESSION_COLUMNS),
        session_end_column().label("session_end"),
    ).where(sessions.c.tenant == bindparam("tenant"), sessions.c.room_sid == bindparam("room_sid"))


_SESSION_COLUMNS = (
    "room_sid", "started_at", "end_source", "duration_seconds", "billable_minutes",
    "session_ended",
)  # fmt: skip


class SessionFacts:
    """The event's session as the ledger has it now; every field None without one."""

    def __init__(self, conn: Connection, tenant: str, room_sid: str) -> None:
        self._conn = conn
        self._tenant = tenant
        self._room_sid = room_sid

    @cached_property
    def _row(self) -> dict[str, Any] | None:
        if not self._room_sid:
            return None
        params = {"tenant": self._tenant, "room_sid": self._room_sid}
        found = execute(self._conn, compiled(self._conn.dialect, _session_row), params).fetchone()
        return (
            None
            if found is None
            else dict(zip((*_SESSION_COLUMNS, "session_end"), found, strict=True))
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in SESSION_FIELDS:
            raise AttributeError(name)
        row = self._row
        if row is None:
            return None
        if name == "status":
            return session_status(bool(row["session_ended"]), row["end_source"])
        if name == "ended_at":
            return row["session_end"]
        return row[name]

    def as_dict(self) -> dict[str, Any]:
        """The session's fields, times as ISO 8601 (for a webhook's body)."""
        values = {name: getattr(self, name) for name in SESSION_FIELDS}
        values["started_at"], values["ended_at"] = (
            iso(values["started_at"]),
            iso(values["ended_at"]),
        )
        return values


class Facts:
    """What a rule can read about one event: its fields, and the ledger's facts."""

    def __init__(
        self,
        conn: Connection,
        event: Event,
        receipt: Receipt,
        reconciled: Reconciled | None = None,
        customer: RoomCustomer | None = None,
    ) -> None:
        tenant = receipt.tenant
        when = event.created_at or int(receipt.received_at)
        self.event = event
        self.reconciled = reconciled
        self.customer = customer
        self.tenant = tenant
        self.when = when
        self.room = RoomFacts(event.room, conn, tenant, when)
        self.session = SessionFacts(conn, tenant, event.room.sid)
        # Every name of CONTEXT: the event's own fields (its room with the room's facts),
        # then the ledger's.
        self.context: dict[str, Any] = {name: getattr(event, name) for name in EVENT_PARTS}
        self.context |= {"room": self.room, "tenant": tenant, "session": self.session}
        self.context |= {"reconciled": reconciled, "customer": customer}

    def resolve(self, path: str) -> Any:
        """Return the value at a dotted path, or None where something on the way is missing."""
        head, *rest = path.split(".")
        value = self.context.get(head)
        for step in rest:
            if value is None:
                return None
            value = getattr(value, step, None)
        return value

    def once_key(self, rule: Rule, event_key: str) -> str:
        """The key that makes a message once per event, session, room, day..."""
        room, day = self.event.room, datetime.fromtimestamp(self.when, UTC).date().isoformat()
        who = self.event.participant.identity if self.event.participant else ""
        return {
            "event": f"event:{event_key}",
            "session": f"session:{room.sid}",
            "participant": f"participant:{room.sid}:{who}",
            "room": f"room:{room.room_id}",
            "room-day": f"room-day:{room.room_id}:{day}",
            "day": f"day:{day}",
        }[rule.once_per]


def render(
    rule: Rule,
    destination: Destination,
    facts: Facts,
    message_id: str,
    *,
    several_tenants: bool = False,
) -> bytes:
    """The exact bytes a destination gets for this rule and event: its kind's body."""
    return destination.kind.body(rule, destination, facts, message_id, several_tenants)


class Workflows:
    """The rules of one runtime, applied to events as they are stored."""

    def __init__(
        self, rules: Rules, *, several_tenants: bool = False, billing: Billing | None = None
    ) -> None:
        self.rules = rules
        self.several_tenants = several_tenants  # chat messages then say whose event it is
        self.billing = billing  # whose rooms are whose, for usage destinations
        self._by_event = {name: rules.for_event(name) for name in rules.events}

    def messages(
        self,
        conn: Connection,
        event: Event,
        receipt: Receipt,
        *,
        only: str | None = None,
        reconciled: Reconciled | None = None,
    ) -> list[Message]:
        """The messages the rules make of one event (``only``: of one rule; ``reconciled``:
        what a reconciliation pass repaired, for its ``reconciled`` event)."""
        tenant, event_key = receipt.tenant, receipt.event_key
        rules = [
            rule
            for rule in self._by_event.get(event.event, ())
            if (only is None or rule.name == only) and rule.tenant in (None, tenant)
        ]
        if not rules:
            return []
        facts = Facts(conn, event, receipt, reconciled, self._customer(tenant, event))
        made = []
        for rule in rules:
            key = facts.once_key(rule, event_key)
            ids = {name: message_id(tenant, rule.name, name, key) for name in rule.send}
            # A rule's messages are queued together: once one is there, its once is spent,
            # and the ledger need not be read for it.
            if rule.once_per != "event" and any(queued_already(conn, i) for i in ids.values()):
                continue
            if not all(c.holds(facts.resolve(c.path)) for c in rule.conditions):
                continue
            for name in rule.send:
                try:
                    body = render(
                        rule,
                        self.rules.destinations[name],
                        facts,
                        ids[name],
                        several_tenants=self.several_tenants,
                    )
                except NothingToSend as reason:
                    log.info(
                        "rule %s sends nothing to %s for %s event %s: %s",
                        rule.name, name, event.event, plain(event_key), plain(str(reason), 200),
                    )  # fmt: skip
                    continue
                except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError) as exc:
                    log.error(
                        "rule %s could not render its message for %s event %s: %s: %s",
                        rule.name, event.event, plain(event_key), type(exc).__name__,
                        plain(str(exc), 200),
                    )  # fmt: skip
                    continue
                made.append(
                    Message(
                        message_id=ids[name],
                        tenant=tenant,
                        rule=rule.name,
                        destination=name,
                        event_key=event_key,
                        event=event.event,
                        room_id=event.room.room_id or None,
                        body=body,
                    )
                )
        return made

    def _customer(self, tenant: str, event: Event) -> RoomCustomer | None:
        """The customer of the event's room, as a rule reads it."""
        found = self.billing.customer_of(tenant, event.room.room_id) if self.billing else None
        if found is None:
            return None
        return RoomCustomer(
            key=found.key,
            name=found.name,
            stripe_customer=found.stripe_customer,
            plan=found.plan.key,
            timezone=found.timezone,
            tenant=found.tenant,
        )

    def enqueue(
        self,
        conn: Connection,
        event: Event,
        receipt: Receipt,
        *,
        only: str | None = None,
        reconciled: Reconciled | None = None,
    ) -> int:
        """Queue the messages of one event in the caller's transaction; return how many."""
        made = self.messages(conn, event, receipt, only=only, reconciled=reconciled)
        return enqueue(conn, made)
