"""Tokens presented to the web routes: each looked at only in one of the app's few slots.

The dashboard's login, the report API and ``/metrics`` share one :class:`GuessLimiter` per
app (per worker process). A token is compared, in constant time, only once a slot is taken;
a wrong one keeps its slot for half a second, so guessing is slow. While every slot is
taken, other tokens are answered 429 at once, before they are looked at: the 429 says
nothing about the token, and guessing never holds the threads that take deliveries.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, current_app, jsonify, request

from plugnmeet_webhooks.text import plain
from validation import bearer

log = logging.getLogger(__name__)

EXTENSION = "pnm_guesses"
SLOTS = 2
DELAY = 0.5  # seconds a wrong token keeps its slot, to make guessing slow
RETRY_AFTER = "5"


class TooManyGuesses(Exception):
    """Every slot is taken: the token was not looked at (answered 429)."""


class GuessLimiter:
    """At most ``slots`` tokens checked at once; a wrong one holds its slot ``delay`` seconds."""

    def __init__(
        self,
        slots: int = SLOTS,
        delay: float = DELAY,
        wait: Callable[[float], object] = time.sleep,
    ) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self.delay = delay
        self._wait = wait

    def check(self, presented: str | None, token: str) -> bool:
        """Tell whether ``presented`` is ``token``; raise TooManyGuesses if no slot is free.

        ``None`` is a credential of the wrong form: as wrong as a wrong token, and as slow.
        """
        if not self._slots.acquire(blocking=False):
            raise TooManyGuesses
        try:
            right = (
                bool(token)
                and presented is not None
                and hmac.compare_digest(presented.encode("utf-8", "replace"), token.encode())
            )
            if not right:
                self._wait(self.delay)
            return right
        finally:
            self._slots.release()


def init_app(app: Flask, limiter: GuessLimiter | None = None) -> None:
    """Give the app its limiter (a new one unless given) and its 429 answer."""
    app.extensions[EXTENSION] = limiter or GuessLimiter()
    app.register_error_handler(TooManyGuesses, too_many_guesses)


def limiter_of(app: Flask) -> GuessLimiter:
    """Return the limiter of ``app``."""
    limiter: GuessLimiter = app.extensions[EXTENSION]
    return limiter


def bearer_is(token: str) -> bool:
    """Tell whether the request's ``Authorization: Bearer`` credential is ``token``.

    A request without ``Authorization`` guesses nothing: it is refused at once, without a
    slot. Any other is checked by the app's limiter (raises TooManyGuesses).
    """
    header = request.headers.get("Authorization")
    if header is None:
        return False
    is_bearer, presented = bearer(header)
    return limiter_of(current_app).check(presented if is_bearer else None, token)


def too_many_guesses(exc: TooManyGuesses) -> tuple[Response, int, dict[str, str]]:
    """Answer a token that found no free slot: 429, whether it was right or wrong."""
    log.warning(
        "refused %s from %s: too many tokens at once", plain(request.path), request.remote_addr
    )
    return jsonify(status="too_many_requests"), 429, {"Retry-After": RETRY_AFTER}
