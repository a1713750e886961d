"""Tenants: a second plugNmeet server cannot touch the first's sessions or events; two keys of
one tenant are one server rotating its key."""

from __future__ import annotations

from dataclasses import replace

from app import create_app
from plugnmeet_webhooks import runtime
from tests.support.helpers import (
    CORPUS,
    KEY,
    OTHER_KEY,
    OTHER_SECRET,
    changed_body,
    corpus,
    corpus_json,
    deliver,
    report,
    stored_count,
    stored_rows,
)

SESSION_ENDED = corpus_json("session_ended")


def test_a_second_tenant_cannot_touch_the_firsts_sessions_or_events(app, client):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    # The other server sends the same room sid with an earlier end, and reuses an event id.
    early_end = changed_body(SESSION_ENDED, created_at="1764171060")
    answer = deliver(client, early_end, key=OTHER_KEY, secret=OTHER_SECRET)
    assert answer.json == {"status": "accepted"}, "its own event, not the first tenant's"

    mine = report(app, "sessions", tenant=KEY)["rows"]
    theirs = report(app, "sessions", tenant=OTHER_KEY)["rows"]
    assert [s["billable_minutes"] for s in mine] == [43]
    assert [s["billable_minutes"] for s in theirs] == [1]
    assert {r["tenant"] for r in report(app, "rooms")["rows"]} == {KEY, OTHER_KEY}
    assert stored_count(app) == 29


def test_two_keys_of_one_tenant_are_one_server_rotating_its_key(settings):
    rotating = create_app(replace(settings, tenants={OTHER_KEY: KEY}))
    client = rotating.test_client()
    body = corpus("session_ended")
    try:
        assert deliver(client, body).json == {"status": "accepted"}
        again = deliver(client, body, key=OTHER_KEY, secret=OTHER_SECRET)
        assert again.json == {"status": "duplicate"}
        assert {r["tenant"] for r in stored_rows(rotating)} == {KEY}
    finally:
        runtime.of(rotating).close()
