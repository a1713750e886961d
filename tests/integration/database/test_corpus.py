"""The whole corpus session through the app: every delivery accepted, stored once, named."""

from __future__ import annotations

import json

import pytest

from tests.support.helpers import (
    CORPUS,
    artifact_type,
    corpus_bodies,
    deliver,
    handler_messages,
    stored_body,
    stored_count,
    stored_rows,
)


def test_corpus_stream_is_accepted_stored_and_understood(app, client, caplog):
    caplog.set_level("INFO")
    bodies = corpus_bodies()
    assert len(bodies) == 28

    answers = [deliver(client, body) for body in bodies]

    assert [a.status for a in answers] == [200] * 28
    assert [a.json["status"] for a in answers] == ["accepted"] * 28
    assert stored_count(app) == 28
    assert all(row["handler_status"] == "ok" for row in stored_rows(app))
    lines = handler_messages(caplog)
    assert "SUCCESS: Room 'weekly-standup' lasted for 43 minutes." in lines
    artifacts = [artifact_type(b) for b in bodies if artifact_type(b)]
    assert len(artifacts) == 9
    for name in artifacts:
        named = [line for line in lines if line.startswith(f"Artifact {name} (")]
        assert len(named) == 1, (name, named)
        assert "UNKNOWN" not in named[0]


def test_redelivered_corpus_stores_nothing_new(app, client, caplog):
    bodies = corpus_bodies()
    for body in bodies:
        assert deliver(client, body).status == 200
    before = stored_rows(app)
    caplog.clear()
    caplog.set_level("INFO")

    again = [deliver(client, body) for body in bodies]

    assert [a.status for a in again] == [200] * 28
    assert [a.json["status"] for a in again] == ["duplicate"] * 28
    assert stored_rows(app) == before
    assert not handler_messages(caplog), "a redelivery must not run the handlers again"


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_each_delivery_is_stored_byte_for_byte(app, client, path):
    body = path.read_bytes()
    payload = json.loads(body)

    answer = deliver(client, body)

    assert answer.status == 200
    [row] = stored_rows(app)
    assert row["event"] == payload["event"]
    assert row["event_id"] == payload["id"]
    assert row["room_id"] == "weekly-standup"
    assert row["room_sid"] == "RM_hK3v9QpZt2Lx"
    assert row["created_at"] == int(payload["created_at"])
    assert row["api_key"] == "plugnmeet"
    assert stored_body(app, payload["id"]) == body
