"""The handler registry: which function handles which event, and what handlers may use.

Handlers do not touch the database: they read a normalised event and add ledger writes to
their :class:`Context`; the writes run in the transaction that stores the event once the
handler has returned. Each runtime has its own registry (a copy of ``handlers.registry``),
so a test registers its own handlers without touching anyone else's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from plugnmeet_webhooks.ledger.writes import Write
from plugnmeet_webhooks.normalize import Event
from plugnmeet_webhooks.storage.events import WEBHOOK
from plugnmeet_webhooks.text import shown

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Context:
    """What a handler may use besides the event, and where it puts the ledger writes it wants."""

    event_key: str
    received_at: float
    source: str = WEBHOOK  # a delivery, or a fact reconciliation learned from the API
    writes: list[Write] = field(default_factory=list)

    def write(self, *writes: Write | None) -> None:
        """Ask for ledger writes (``None`` items are ignored)."""
        self.writes.extend(w for w in writes if w is not None)


Handler = Callable[[Event, Context], None]


class Registry:
    """Event names mapped to the functions that handle them."""

    def __init__(self, handlers: Mapping[str, Handler] | None = None) -> None:
        self._handlers: dict[str, Handler] = dict(handlers or {})
        self._names = frozenset(self._handlers)

    def on(self, *names: str, replace: bool = False) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of the named events.

        A name that already has a handler is refused unless ``replace`` is true.
        """

        def register(fn: Handler) -> Handler:
            for name in names:
                if name in self._handlers and not replace:
                    raise ValueError(f"event {name!r} already has a handler")
                self._handlers[name] = fn
            self._names = frozenset(self._handlers)
            return fn

        return register

    def copy(self) -> Registry:
        """Return a registry with the same handlers, to change without touching this one."""
        return Registry(self._handlers)

    def handler(self, name: str) -> Handler | None:
        """Return the handler of an event name, or None."""
        return self._handlers.get(name)

    @property
    def names(self) -> frozenset[str]:
        """The names of the events that have a handler."""
        return self._names

    @property
    def logger_names(self) -> list[str]:
        """The loggers handling writes to: each handler's module's, and the registry's own."""
        modules = {fn.__module__ for fn in self._handlers.values()}
        return sorted(modules | {log.name})

    def plan(self, event: Event, ctx: Context) -> list[Write]:
        """Run the handler of ``event`` and return the ledger writes it asked for.

        An event without a handler is logged (it is stored all the same) and writes nothing.
        """
        handler = self._handlers.get(event.event)
        if handler is None:
            room = event.room
            where = f"room {shown(room.room_id or room.sid or '?')}"
            log.info("Stored event %s (%s); no handler for it.", shown(event.event), where)
            return []
        handler(event, ctx)
        return ctx.writes
