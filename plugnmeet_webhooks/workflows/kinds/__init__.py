"""Destination kinds: each kind of destination is one module behind one interface.

A kind (:class:`Kind`) reads and checks its own keys of a ``[destinations.NAME]`` table,
says which keys a rule sending to it must have, makes the exact bytes a rule sends, and
gives the headers and the URL of each attempt. The dispatcher sends every kind with the
same retries, leases and deadlines, and adds ``Content-Type`` (the kind's),
``User-Agent`` and ``Idempotency-Key`` itself.

``registry`` holds the built-in kinds: ``slack`` and ``webhook`` to tell people and
services, ``stripe-meter`` and ``cloudevents`` to send usage to billing systems. Every
runtime reads its rules file with its own copy of it, so a test registers its own kinds
without touching anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from plugnmeet_webhooks.workflows.kinds.cloudevents import CloudEventsKind
from plugnmeet_webhooks.workflows.kinds.slack import SlackKind
from plugnmeet_webhooks.workflows.kinds.stripe_meter import StripeMeterKind
from plugnmeet_webhooks.workflows.kinds.webhook import WebhookKind

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.reader import Reader
    from plugnmeet_webhooks.workflows.rules import Destination, Rule


class Kind(Protocol):
    """One kind of destination. A kind is any object with these members (it need not
    inherit this class; plain class attributes do for the properties); each module of this
    package holds one."""

    @property
    def name(self) -> str:
        """What a destination's ``kind`` says to choose it, e.g. ``"slack"``."""
        ...

    @property
    def title(self) -> str:
        """How a sentence names it: "rule 'r' sends to Slack but has no text"."""
        ...

    @property
    def rule_keys(self) -> tuple[str, ...]:
        """The keys a rule that sends to it must have, not empty (``slack``: ``text``)."""
        ...

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The names of its settings that are secret: never shown, never logged."""
        ...

    @property
    def reads_customers(self) -> bool:
        """Whether what it sends is per customer of the billing file, so that it sends
        nothing without one (``stripe-meter``: the customer's Stripe id)."""
        ...

    @property
    def content_type(self) -> str:
        """The ``Content-Type`` of what it sends."""
        ...

    def settings(self, read: Reader, where: str, env: Mapping[str, str]) -> object | None:
        """Read and check the kind's own keys of a destination's table (``kind`` and
        ``url`` are read already); return them as a frozen dataclass, or None. A mistake
        raises :class:`~config.ConfigError` with one sentence that starts with ``where``.
        A setting named ``secret`` is also the destination's ``secret``."""
        ...

    def body(
        self,
        rule: Rule,
        destination: Destination,
        facts: Facts,
        message_id: str,
        several_tenants: bool,
    ) -> bytes:
        """The exact bytes queued for this rule and event (``message_id``: the message's
        stable id; ``several_tenants``: the runtime hears more than one tenant)."""
        ...

    def headers(
        self, destination: Destination, message_id: str, body: bytes, now: float
    ) -> dict[str, str]:
        """The kind's own headers of one attempt made at ``now`` (signatures, say)."""
        ...

    def url(self, destination: Destination) -> str:
        """Where an attempt POSTs."""
        ...


class Kinds:
    """Destination kinds by name, in the order they were registered."""

    def __init__(self, kinds: Iterable[Kind] = ()) -> None:
        self._kinds: dict[str, Kind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: Kind, *, replace: bool = False) -> Kind:
        """Register a kind by its name; a name registered already is refused unless
        ``replace`` is true."""
        if kind.name in self._kinds and not replace:
            raise ValueError(f"destination kind {kind.name!r} is registered already")
        self._kinds[kind.name] = kind
        return kind

    def copy(self) -> Kinds:
        """Return a registry with the same kinds, to change without touching this one."""
        return Kinds(self._kinds.values())

    def get(self, name: str) -> Kind | None:
        """Return the kind of this name, or None."""
        return self._kinds.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the registered kinds, in the order they were registered."""
        return tuple(self._kinds)


registry = Kinds([SlackKind(), WebhookKind(), StripeMeterKind(), CloudEventsKind()])
"""The built-in kinds; a runtime takes a copy of it."""
