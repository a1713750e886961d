"""Forgetting a participant: every field that names them, in events, ledger, files and
recorded errors, and nothing else; minutes and costs stay."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from plugnmeet_webhooks import runtime
from tests.support.helpers import CORPUS, corpus_json, deliver, failed_with, report, stored_text


def _mallory(**participant) -> bytes:
    payload = corpus_json("participant_joined")
    payload["id"] = f"mallory-{len(participant)}-{sorted(participant.items())!r}"[:150]
    payload["participant"] |= {"sid": "PA_m", "identity": "u-mallory"} | participant
    return json.dumps(payload).encode()


def test_forget_participant_leaves_minutes_and_no_name(app, client, runner):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    minutes_before = report(app, "rooms")["rows"][0]["attendee_minutes"]
    cost_before = report(app, "usage")["total"]["estimated_cost"]

    result = runner.invoke(args=["forget-participant", "u-alice", "--yes"])

    assert result.exit_code == 0, result.output
    assert "Forgotten as forgotten-" in result.output
    with runtime.of(app).database().connect() as conn:
        bodies = b"".join(map(bytes, conn.execute(text("SELECT body FROM events")).scalars()))
        people = conn.execute(text("SELECT identity, name FROM participants")).all()
        users = conn.execute(text("SELECT user_id FROM usage")).scalars().all()
    assert b"u-alice" not in bodies and b"Alice Admin" not in bodies
    assert b"u-bob" in bodies, "the others stay"
    assert "u-alice" not in {p.identity for p in people}
    assert all(p.name != "Alice Admin" for p in people)
    assert "u-alice" not in users and any(u and u.startswith("forgotten-") for u in users)
    assert report(app, "rooms")["rows"][0]["attendee_minutes"] == minutes_before
    assert report(app, "usage")["total"]["estimated_cost"] == cost_before

    runner.invoke(args=["rebuild-ledger", "--yes"])
    assert report(app, "rooms")["rows"][0]["attendee_minutes"] == minutes_before
    with runtime.of(app).database().connect() as conn:
        names = conn.execute(text("SELECT identity FROM participants")).scalars().all()
    assert "u-alice" not in names


def test_forgetting_touches_only_the_fields_that_name_the_person(app, client, runner):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    # A participant named like a field, another whose id looks like a number in the data.
    assert deliver(client, _mallory(name="room")).status == 200
    assert deliver(client, _mallory(identity="1000", sid="PA_n", name="Nina")).status == 200
    before = report(app, "rooms")["rows"][0]
    usage_before = report(app, "usage")["total"]

    for who in ("u-mallory", "1000"):
        result = runner.invoke(args=["forget-participant", who, "--yes"])
        assert result.exit_code == 0, result.output

    with runtime.of(app).database().connect() as conn:
        bodies = [json.loads(b) for b in conn.execute(text("SELECT body FROM events")).scalars()]
    assert all("room" in b for b in bodies), "no other field is renamed"
    assert report(app, "usage")["total"] == usage_before, "no breakdown value is touched"
    runner.invoke(args=["rebuild-ledger", "--yes"])
    after = report(app, "rooms")["rows"][0]
    assert (after["billable_minutes"], after["attendees"]) == (
        before["billable_minutes"],
        before["attendees"],
    )
    assert report(app, "usage")["total"] == usage_before


def test_a_forgotten_name_does_not_come_back_with_a_later_event(app, client, runner):
    assert deliver(client, _mallory(name="Mallory Example")).status == 200
    assert runner.invoke(args=["forget-participant", "u-mallory", "--yes"]).exit_code == 0
    left = json.loads(_mallory(name="Mallory Example"))
    left |= {"event": "participant_left", "id": "mallory-left", "created_at": "1764172000"}
    assert deliver(client, json.dumps(left).encode()).status == 200
    with runtime.of(app).database().connect() as conn:
        names = conn.execute(text("SELECT name FROM participants")).scalars().all()
    assert all(n.startswith("forgotten-") for n in names), names


def test_a_participant_whose_sid_is_their_identity_is_forgotten_in_both(app, client, runner):
    joined = json.loads(_mallory(sid="u-mallory", name="Mallory Example"))
    joined["id"] = "mallory-joined"  # an id of its own: this one would spell the name
    left = joined | {"event": "participant_left", "id": "mallory-left", "created_at": "1764172000"}
    for body in (json.dumps(joined).encode(), json.dumps(left).encode()):
        assert deliver(client, body).status == 200
    before = report(app, "rooms")["rows"][0]
    assert runner.invoke(args=["forget-participant", "u-mallory", "--yes"]).exit_code == 0
    runner.invoke(args=["rebuild-ledger", "--yes"])

    with runtime.of(app).database().connect() as conn:
        stored = " ".join(
            str(value)
            for query in (
                "SELECT * FROM events",
                "SELECT * FROM participants",
                "SELECT * FROM attendance",
            )
            for row in conn.execute(text(query))
            for value in row
        )
    assert "u-mallory" not in stored and "Mallory Example" not in stored
    after = report(app, "rooms")["rows"][0]
    assert (after["attendees"], after["attendee_minutes"]) == (
        before["attendees"],
        before["attendee_minutes"],
    )


@pytest.mark.parametrize("forget", ["u-mallory", "PA_m"])
def test_events_sent_without_the_identity_are_forgotten_by_their_sid(app, client, runner, forget):
    """Forgetting by identity reaches that person's events sent without one (through their
    participant sid); with no identity ever sent, the sid standing in for it is forgotten."""
    joined = json.loads(_mallory(name="Mallory Example"))
    joined |= {"id": "mallory-joined"}
    joined["participant"] |= {"identity": ""}
    left = json.loads(_mallory(name="Mallory Example"))
    left |= {"event": "participant_left", "id": "mallory-left", "created_at": "1764172000"}
    if forget == "PA_m":
        left["participant"] |= {"identity": ""}
    for body in (joined, left):
        assert deliver(client, json.dumps(body).encode()).status == 200
    assert runner.invoke(args=["forget-participant", forget, "--yes"]).exit_code == 0
    assert "Mallory Example" not in stored_text(app)
    runner.invoke(args=["rebuild-ledger", "--yes"])
    assert "Mallory Example" not in stored_text(app)
    [stay] = report(app, "attendance")["rows"]
    assert stay["name"].startswith("forgotten-")


def test_forgetting_reaches_file_paths_and_recorded_errors(app, client, runner):
    artifact = corpus_json("artifact_created_meeting_summary")
    artifact["room_artifact"]["metadata"]["file_info"]["file_path"] = "summaries/u-dave/x.txt"
    artifact["room_artifact"]["metadata"]["user_info"] = {"user_id": "u-dave", "name": "Dave"}
    assert deliver(client, json.dumps(artifact).encode()).status == 200
    # a chat usage with a breakdown
    usage_body = corpus_json("artifact_created_ai_text_chat_interaction_usage")
    usage_body["id"] = "bad-breakdown"
    usage_body["room_artifact"]["artifact_id"] = "bad-breakdown"
    usage_body["room_artifact"]["metadata"]["token_usage"]["breakdown"] = {"u-dave": "lots"}
    assert deliver(client, json.dumps(usage_body).encode()).status == 200
    assert "u-dave" in failed_with(app, "breakdown")["handler_error"]

    assert runner.invoke(args=["forget-participant", "u-dave", "--yes"]).exit_code == 0

    with runtime.of(app).database().connect() as conn:
        everything = " ".join(
            str(value)
            for table in ("events", "files", "usage", "participants", "attendance")
            for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 - fixed names
            for value in row
        )
    assert "u-dave" not in everything


def test_a_deeply_nested_body_does_not_stop_forgetting(app, client, runner):
    nested: object = "x"
    for _ in range(900):
        nested = [nested]
    deep = json.loads(_mallory(name="Mallory"))
    deep["padding"] = nested
    assert deliver(client, json.dumps(deep).encode()).status == 200
    assert deliver(client, _mallory(name="Mallory", sid="PA_x")).status == 200
    result = runner.invoke(args=["forget-participant", "u-mallory", "--yes"])
    assert result.exit_code == 0, result.output
    with runtime.of(app).database().connect() as conn:
        identities = conn.execute(text("SELECT identity FROM participants")).scalars().all()
    assert identities and "u-mallory" not in identities
