"""Guessing tokens: the login, the report API and /metrics share one app's two slots.

The limiter's wait is a gate the test opens, so "two wrong tokens are being slowed down" is
a state the test holds for as long as it likes, not a race against half a second.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import pytest
from flask import Flask

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.web import auth

ADMIN = "g" * 20 + "-admin-token"
METRICS = "m" * 20 + "-metrics-token"


class Gate:
    """The limiter's wait: holds each wrong token in its slot until the test opens the gate."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._arrived = threading.Semaphore(0)
        self._open = threading.Event()

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self._arrived.release()
        assert self._open.wait(30), "the test never opened the gate"

    def held(self, count: int) -> None:
        """Return once ``count`` more wrong tokens wait in their slots."""
        for _ in range(count):
            assert self._arrived.acquire(timeout=30), "no wrong token reached its slot"

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def guarded(settings, gate) -> Iterator[Flask]:
    application = create_app(replace(settings, admin_token=ADMIN, metrics_token=METRICS))
    auth.init_app(application, auth.GuessLimiter(wait=gate))  # the default slots and delay
    yield application
    gate.open()  # a failed test must not leave threads waiting
    runtime.of(application).close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def _login_form(application: Flask, token: str):
    """A client with the login page open, and the form it would send with ``token``."""
    client = application.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return client, {"token": token, "csrf": csrf}


def _wrong_login(pool: ThreadPoolExecutor, application: Flask) -> Future:
    client, form = _login_form(application, ADMIN + "-wrong")
    return pool.submit(client.post, "/dashboard/login", data=form)


def _get(pool: ThreadPoolExecutor, application: Flask, path: str, token: str) -> Future:
    headers = {"Authorization": f"Bearer {token}"}
    return pool.submit(application.test_client().get, path, headers=headers)


def _status(future: Future) -> int:
    return future.result(timeout=30).status_code


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_while_two_wrong_tokens_are_held_even_the_right_one_gets_a_429(guarded, gate, pool):
    held = [_wrong_login(pool, guarded), _wrong_login(pool, guarded)]
    gate.held(2)

    client, form = _login_form(guarded, ADMIN)
    busy = client.post("/dashboard/login", data=form)
    assert (busy.status_code, busy.headers["Retry-After"]) == (429, "5")
    assert "Too many tokens are being checked at once" in busy.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 303  # not signed in
    api = guarded.test_client()
    for token in (ADMIN, ADMIN + "-wrong"):
        answer = api.get("/api/rooms", headers=_bearer(token))
        assert (answer.status_code, answer.headers["Retry-After"]) == (429, "5")
        assert answer.json == {"status": "too_many_requests"}
    assert len(gate.waits) == 2  # none of those was looked at, so none was slowed

    gate.open()
    assert [_status(f) for f in held] == [401, 401]
    assert gate.waits == [auth.DELAY, auth.DELAY] == [0.5, 0.5]
    client, form = _login_form(guarded, ADMIN)
    answer = client.post("/dashboard/login", data=form)
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard")
    assert client.get("/dashboard").status_code == 200


def test_a_wrong_bearer_on_the_api_holds_a_slot_and_is_a_404(guarded, gate, pool):
    first = _get(pool, guarded, "/api/rooms", ADMIN + "-wrong")
    gate.held(1)
    second = _get(pool, guarded, "/api/rooms", "another-wrong-token-guess")
    gate.held(1)

    client = guarded.test_client()
    third = client.get("/api/rooms", headers=_bearer("a-third-wrong-token-guess"))
    assert (third.status_code, third.json) == (429, {"status": "too_many_requests"})
    # No Authorization at all: no guess, so no slot and no wait; the API does not exist.
    nothing = client.get("/api/rooms")
    assert (nothing.status_code, nothing.json) == (404, {"status": "not_found"})
    assert "Retry-After" not in nothing.headers
    assert len(gate.waits) == 2

    gate.open()
    for future in (first, second):
        answer = future.result(timeout=30)
        assert (answer.status_code, answer.json) == (404, {"status": "not_found"})
    assert client.get("/api/rooms", headers=_bearer(ADMIN)).status_code == 200


def test_the_metrics_token_takes_the_same_slots(guarded, gate, pool):
    login = _wrong_login(pool, guarded)
    gate.held(1)
    metrics = _get(pool, guarded, "/metrics", METRICS + "-wrong")
    gate.held(1)

    client = guarded.test_client()
    busy = client.get("/metrics", headers=_bearer(METRICS))
    assert (busy.status_code, busy.headers["Retry-After"]) == (429, "5")
    assert busy.json == {"status": "too_many_requests"}
    assert client.get("/api/rooms", headers=_bearer(ADMIN)).status_code == 429
    without = client.get("/metrics")  # no token sent: refused at once, no slot
    assert (without.status_code, without.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert len(gate.waits) == 2

    gate.open()
    assert (_status(login), _status(metrics)) == (401, 401)
    page = client.get("/metrics", headers=_bearer(METRICS))
    assert page.status_code == 200 and b"pnm_webhook_deliveries_total" in page.data


def test_a_right_token_gives_its_slot_back_at_once(guarded, gate, pool):
    held = [_get(pool, guarded, "/api/rooms", "a-wrong-token-guess-here")]
    gate.held(1)
    client = guarded.test_client()
    # One slot is left: had a right token kept it, the second of these would get a 429.
    for _ in range(3):
        assert client.get("/api/rooms", headers=_bearer(ADMIN)).status_code == 200
        assert client.get("/metrics", headers=_bearer(METRICS)).status_code == 200
    right, form = _login_form(guarded, ADMIN)
    assert right.post("/dashboard/login", data=form).status_code == 303

    held.append(_wrong_login(pool, guarded))
    gate.held(1)  # the second slot was free
    assert client.get("/api/rooms", headers=_bearer(ADMIN)).status_code == 429
    gate.open()
    assert [_status(f) for f in held] == [404, 401]


def test_without_an_admin_token_a_bearer_on_the_api_takes_no_slot(settings, gate):
    application = create_app(settings)
    auth.init_app(application, auth.GuessLimiter(slots=1, wait=gate))
    try:
        answer = application.test_client().get("/api/rooms", headers=_bearer("x" * 30))
        assert answer.status_code == 404
        assert gate.waits == []
    finally:
        runtime.of(application).close()
