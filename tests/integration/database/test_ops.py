"""Health, readiness, metrics and the report API."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app import create_app
from plugnmeet_webhooks import runtime
from tests.support.helpers import (
    OTHER_SECRET,
    SECRET,
    corpus,
    corpus_bodies,
    deliver,
    metric,
    report,
)

ADMIN = "a" * 20 + "-admin-token"


@pytest.fixture
def admin_app(settings):
    application = create_app(replace(settings, admin_token=ADMIN))
    yield application
    runtime.of(application).close()


def _get(client, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, headers=headers)


def test_health_and_readiness(client):
    assert (_get(client, "/healthz").status_code, _get(client, "/healthz").json) == (
        200,
        {"status": "ok"},
    )
    assert (_get(client, "/readyz").status_code, _get(client, "/readyz").json) == (
        200,
        {"status": "ready"},
    )


def test_not_ready_when_the_database_is_gone(settings):
    unreachable = "postgresql://nobody@127.0.0.1:9/none"
    app = create_app(replace(settings, database_url=unreachable, db_timeout=0.5))
    try:
        response = app.test_client().get("/readyz")
    finally:
        runtime.of(app).close()
    assert (response.status_code, response.json) == (
        503,
        {"status": "unavailable", "reason": "database"},
    )


def test_report_api_does_not_exist_without_an_admin_token(client):
    for path in ("/api/sessions", "/api/usage", "/api/rooms"):
        assert _get(client, path).status_code == 404
        assert _get(client, path, token="anything-at-all-long").status_code == 404


def test_report_api_needs_the_exact_bearer_token(admin_app, caplog):
    client = admin_app.test_client()
    assert _get(client, "/api/rooms").status_code == 404
    assert _get(client, "/api/rooms", token=ADMIN + "x").status_code == 404
    assert _get(client, "/api/rooms", token=ADMIN[:-1]).status_code == 404
    response = client.get("/api/rooms", headers={"Authorization": f"Basic {ADMIN}"})
    assert response.status_code == 404
    assert _get(client, "/api/rooms", token=ADMIN).status_code == 200
    assert "refused report request from 127.0.0.1" in caplog.text
    assert ADMIN not in caplog.text


@pytest.mark.parametrize("name", ["sessions", "usage", "rooms"])
def test_report_api_serves_what_the_cli_prints(admin_app, name):
    client = admin_app.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200

    response = _get(client, f"/api/{name}?since=2025-11-01&until=2025-11-30", token=ADMIN)

    assert response.status_code == 200
    assert response.json == report(admin_app, name)
    assert list(response.json["rows"][0]) == list(report(admin_app, name)["rows"][0])
    assert _get(client, f"/api/{name}?room=elsewhere", token=ADMIN).json["rows"] == []


def test_report_api_explains_bad_dates(admin_app):
    response = _get(admin_app.test_client(), "/api/usage?since=last-month", token=ADMIN)
    assert response.status_code == 400
    assert response.json == {
        "status": "bad_request",
        "error": "since must be a date like 2026-11-01, not 'last-month'.",
    }
    assert _get(admin_app.test_client(), "/api/other", token=ADMIN).status_code == 404


def test_short_admin_token_is_refused_at_start_up():
    from config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PNM_ADMIN_TOKEN is shorter than 16 characters"):
        load_settings(
            {
                "PNM_API_KEY": "k",
                "PNM_API_KEYS": "",
                "PNM_API_SECRET": SECRET,
                "PNM_ADMIN_TOKEN": "short",
            }
        )


def test_metrics_count_outcomes_events_and_latency(app, app_runtime, client):
    accepted = 'pnm_webhook_deliveries_total{outcome="accepted",reason=""}'
    duplicate = 'pnm_webhook_deliveries_total{outcome="duplicate",reason=""}'
    forbidden = 'pnm_webhook_deliveries_total{outcome="forbidden",reason="token"}'
    joined = 'pnm_webhook_events_total{event="participant_joined"}'
    failures = 'pnm_webhook_handler_failures_total{event="session_ended"}'
    observed = "pnm_webhook_request_seconds_count"
    names = (accepted, duplicate, forbidden, joined, failures, observed)
    before = {name: metric(client, name) for name in names}

    def broken(event, ctx):
        raise RuntimeError("boom")

    app_runtime.registry.on("session_ended", replace=True)(broken)
    bodies = corpus_bodies()
    for body in bodies:
        deliver(client, body)
    deliver(client, bodies[0])
    deliver(client, bodies[0], secret=SECRET[::-1])

    after = {name: metric(client, name) for name in names}
    assert after[accepted] - before[accepted] == 28
    assert after[duplicate] - before[duplicate] == 1
    assert after[forbidden] - before[forbidden] == 1
    assert after[joined] - before[joined] == 3
    assert after[failures] - before[failures] == 1
    assert after[observed] - before[observed] == 30
    assert client.get("/metrics").content_type.startswith("text/plain")


@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "DELETE", "PATCH"])
def test_report_api_does_not_reveal_itself_to_other_methods(admin_app, method):
    client = admin_app.test_client()
    for token in (None, ADMIN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        assert client.open("/api/rooms", method=method, headers=headers).status_code == 404


def test_other_routes_name_their_own_methods_in_a_405(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"] and "POST" not in response.headers["Allow"]
    assert client.open("/healthz", method="OPTIONS").status_code == 405


def test_public_metrics_cannot_tell_an_unknown_key_from_a_wrong_secret(app, client):
    body = corpus("room_created")
    deliver(client, body, key="guessed-key")
    deliver(client, body, secret=OTHER_SECRET)
    page = client.get("/metrics").get_data(as_text=True)
    assert 'reason="unknown_key"' not in page and 'reason="signature"' not in page
    assert metric(client, 'pnm_webhook_deliveries_total{outcome="forbidden",reason="token"}') == 2


def test_metrics_behind_their_own_token_may_say_which_check_failed(settings):
    token = "m" * 20 + "-metrics-token"
    guarded = create_app(replace(settings, metrics_token=token))
    client = guarded.test_client()
    try:
        deliver(client, corpus("room_created"), key="guessed-key")
        refused = client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        )
        reason = 'pnm_webhook_deliveries_total{outcome="forbidden",reason="unknown_key"}'
        assert metric(client, reason, token) == 1
    finally:
        runtime.of(guarded).close()


@pytest.fixture
def admin_client(settings):
    application = create_app(replace(settings, admin_token=ADMIN))
    yield application.test_client()
    runtime.of(application).close()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("until=9999-12-31", "until must be a date from 1970-01-01 to 9998-12-31"),
        ("since=0001-01-01", "since must be a date from 1970-01-01"),
        ("room=%00", "room must be printable text"),
        ("room=" + "r" * 201, "room must be printable text of at most 200 characters"),
        ("tenant=%1b%5b2J", "tenant must be printable text"),
    ],
)
def test_every_bad_report_parameter_is_a_400_with_the_reason(admin_client, query, reason):
    response = admin_client.get(f"/api/rooms?{query}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 400
    assert response.json["status"] == "bad_request"
    assert reason in response.json["error"]
