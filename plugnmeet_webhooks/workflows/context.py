"""What a rule can read: the names of its context, and the fields below each one.

The normalised event's dataclasses (:mod:`plugnmeet_webhooks.normalize`) say what an event
holds; the ledger adds ``session`` and the room's facts; a reconciliation pass adds
``reconciled``. A rules file that names anything else is refused at start-up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from plugnmeet_webhooks import normalize

# What a rule can read: each name of the context, and the fields below it.
SESSION_FIELDS = (
    "room_sid", "started_at", "ended_at", "end_source", "status", "duration_seconds",
    "billable_minutes",
)  # fmt: skip
ROOM_FACTS = ("title", "ai_cost_today")


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What a reconciliation pass repaired for one tenant: the ``reconciled`` event's facts."""

    sessions_closed: int = 0
    sessions_discovered: int = 0
    artifacts_added: int = 0
    recordings_added: int = 0
    unresolved: int = 0
    rooms: str = ""  # the rooms repaired, comma-separated
    since: str = ""  # the start of the window the pass looked at (ISO 8601)


@dataclass(frozen=True, slots=True)
class RoomCustomer:
    """The customer who owns the event's room in the billing file (``customer``; None when
    no customer does, or without a billing file)."""

    key: str
    name: str
    stripe_customer: str | None
    plan: str
    timezone: str
    tenant: str | None


RECONCILED = "reconciled"
"""The event a pass that repaired something raises, for rules to tell someone."""

EVENT_PARTS = tuple(f.name for f in dataclasses.fields(normalize.Event))
"""The names a rule reads from the normalised event itself: its every field."""

LEDGER_PARTS = ("tenant", "session", "reconciled", "customer")
"""The names a rule reads beside the event: whose event it is, its session, a pass's repairs,
and the customer of its room (from the billing file)."""


def _fields_of(kind: Any) -> tuple[str, ...] | None:
    """The names readable below a context entry, or None for a plain value."""
    if isinstance(kind, tuple):
        return kind
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        names = tuple(f.name for f in dataclasses.fields(kind))
        return (*names, *ROOM_FACTS) if kind is normalize.Room else names
    return None


def check_path(path: str) -> str | None:
    """Say what is wrong with a dotted path into the context, or None if it names something."""
    kind: Any = CONTEXT
    walked: list[str] = []
    for step in path.split("."):
        names = tuple(CONTEXT) if kind is CONTEXT else _fields_of(kind)
        where = ".".join(walked) or "a rule"
        if names is None:
            return f"{where} has no fields"
        if step not in names:
            return f"{where} has no {step!r}; it has {', '.join(names)}"
        walked.append(step)
        if kind is CONTEXT:
            kind = CONTEXT[step]
        elif dataclasses.is_dataclass(kind):
            inner = {f.name: f for f in dataclasses.fields(kind)}.get(step)
            kind = _nested(inner.type) if inner is not None else None
        else:
            kind = None
    return None


def _nested(annotation: Any) -> Any:
    """The dataclass a field holds, when it holds one (annotations are strings here)."""
    text = str(annotation).replace(" | None", "")
    return getattr(normalize, text, None) if text[:1].isupper() else None


def _event_part(annotation: Any) -> Any:
    """What an event field holds: the dataclass of a message, or the plain type's name."""
    return _nested(annotation) or str(annotation)


CONTEXT: dict[str, Any] = {
    **{f.name: _event_part(f.type) for f in dataclasses.fields(normalize.Event)},
    "tenant": str,
    "session": SESSION_FIELDS,
    "reconciled": Reconciled,
    "customer": RoomCustomer,
}
"""What a rule can read: each name, and what is below it (a dataclass's fields, a tuple of
names, or nothing for a plain value)."""
