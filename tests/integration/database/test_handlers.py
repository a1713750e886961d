"""Handlers: session length, artifact lines, unknown events, failures kept with the event."""

from __future__ import annotations

import json

import pytest

import handlers
from plugnmeet_webhooks.normalize import ARTIFACT_TYPES, normalize
from tests.support.helpers import SAMPLES_DIR, deliver, handler_messages, stored_rows

SESSION = {
    "event": "session_ended",
    "room": {"sid": "RM_1", "room_id": "r1", "creation_time": "1764171000"},
    "id": "s-1",
    "created_at": "1764173565",
}


def test_session_without_creation_time_has_no_length(app, client, caplog):
    caplog.set_level("INFO")
    payload = dict(SESSION, room={"room_id": "r1"})
    assert handlers.session_length(normalize(payload), 1764180000.0) is None
    assert deliver(client, json.dumps(payload).encode()).status == 200
    assert handler_messages(caplog) == [
        "Room 'r1' ended, but no creation_time was sent: length unknown."
    ]


def _artifact(type_value, metadata: dict) -> bytes:
    artifact = {"artifact_id": "a-1", "metadata": metadata}
    if type_value is not None:
        artifact["type"] = type_value
    return json.dumps(
        {
            "event": "artifact_created",
            "room": {"room_id": "r1"},
            "room_artifact": artifact,
            "id": f"e-{type_value}-{len(metadata)}",
            "created_at": "1764173572",
        }
    ).encode()


FILE = {"file_info": {"file_path": "x/summary.txt", "file_size": "2210", "mime_type": "text/plain"}}
TOKENS = {
    "token_usage": {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "total_tokens_estimated_cost": 0.000123,
    }
}
SECONDS = {"duration_usage": {"duration_sec": 4711, "duration_sec_estimated_cost": 0.078517}}
CHARS = {"character_count_usage": {"total_characters": 5120}}
EXPECTED = {
    "UNKNOWN_ARTIFACT": ({}, "type unknown, stored as sent"),
    "MEETING_ANALYTICS": (FILE, "file x/summary.txt (2210 bytes, text/plain)"),
    "MEETING_SUMMARY": (FILE, "file x/summary.txt (2210 bytes, text/plain)"),
    "MEETING_SUMMARY_USAGE": (
        TOKENS,
        "15 tokens (10 prompt + 5 completion), estimated cost 0.000123",
    ),
    "SPEECH_TRANSCRIPTION": (FILE, "file x/summary.txt"),
    "SPEECH_TRANSCRIPTION_USAGE": (SECONDS, "4711 seconds, estimated cost 0.078517"),
    "SYNTHESIZED_SPEECH_USAGE": (CHARS, "5120 characters, no cost reported"),
    "CHAT_TRANSLATION_USAGE": (CHARS, "5120 characters, no cost reported"),
    "AI_TEXT_CHAT_INTERACTION_USAGE": (TOKENS, "15 tokens"),
    "AI_TEXT_CHAT_SUMMARIZATION_USAGE": (TOKENS, "estimated cost 0.000123"),
}


@pytest.mark.parametrize("by", ["name", "number"])
@pytest.mark.parametrize("name", ARTIFACT_TYPES)
def test_every_artifact_type_is_named_by_name_or_number(app, client, caplog, name, by):
    caplog.set_level("INFO")
    metadata, expected = EXPECTED[name]
    number = ARTIFACT_TYPES.index(name)
    type_value = name if by == "name" else number
    if number == 0 and by == "name":
        type_value = None  # protojson omits a zero enum

    assert deliver(client, _artifact(type_value, metadata)).status == 200

    [line] = handler_messages(caplog)
    assert line.startswith(f"Artifact {name} (a-1) for room 'r1'")
    assert expected in line


def test_unknown_artifact_number_is_kept_and_logged(app, client, caplog):
    caplog.set_level("INFO")
    assert deliver(client, _artifact(42, TOKENS)).status == 200
    [line] = handler_messages(caplog)
    assert line.startswith("Artifact 42 (a-1)")
    assert "type not known to this receiver" in line and "15 tokens" in line


def test_unknown_event_is_stored_and_acknowledged(app, client, caplog):
    caplog.set_level("INFO")
    body = SAMPLES_DIR.joinpath("speech_service_started.json").read_bytes()
    answer = deliver(client, body)
    assert (answer.status, answer.json) == (200, {"status": "accepted"})
    [row] = stored_rows(app)
    assert (row["event"], row["handler_status"]) == ("speech_service_started", "ok")
    assert handler_messages(caplog) == [
        "Stored event 'speech_service_started' (room 'product-review'); no handler for it."
    ]


def test_raising_handler_is_logged_recorded_and_still_acknowledged(
    app, app_runtime, client, caplog
):
    def broken(event, ctx):
        raise RuntimeError("ledger is confused")

    app_runtime.registry.on("session_ended", replace=True)(broken)
    caplog.set_level("INFO")

    answer = deliver(client, json.dumps(SESSION).encode())

    assert (answer.status, answer.json) == (200, {"status": "accepted"})
    [row] = stored_rows(app)
    assert row["handler_status"] == "failed"
    assert row["handler_error"] == "RuntimeError: ledger is confused"
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert "session_ended" in record.getMessage()


def test_mistyped_field_is_kept_and_marked_failed(app, client):
    payload = dict(SESSION, created_at="yesterday")
    assert deliver(client, json.dumps(payload).encode()).status == 200
    [row] = stored_rows(app)
    assert row["handler_status"] == "failed"
    assert (
        row["handler_error"] == "NormalizationError: event.created_at: expected an integer, got str"
    )
    assert row["created_at"] is None


def test_event_without_id_is_deduplicated_on_its_digest(app, client):
    body = json.dumps({k: v for k, v in SESSION.items() if k != "id"}).encode()
    assert deliver(client, body).json == {"status": "accepted"}
    assert deliver(client, body).json == {"status": "duplicate"}
    [row] = stored_rows(app)
    assert row["event_id"] is None
    assert row["dedupe_key"].startswith("sha256:") and len(row["dedupe_key"]) == 71


def test_sender_text_cannot_forge_or_flood_log_lines(app, client, caplog):
    caplog.set_level("INFO")
    payload = dict(
        SESSION,
        room={
            "room_id": "r1\nERROR forged line\x1b[2J" + "x" * 170,
            "creation_time": "1764171000",
        },
    )

    assert deliver(client, json.dumps(payload).encode()).status == 200

    [line] = handler_messages(caplog)
    assert "\n" not in line and "\x1b" not in line
    assert line.startswith("SUCCESS: Room 'r1\\nERROR forged line\\x1b[2J")
    assert len(line) < 300


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("created_at", "-5"),
        ("created_at", "99999999999"),
        ("created_at", "1e3"),
        ("created_at", " 1764173565"),
    ],
)
def test_implausible_numbers_are_kept_but_marked_failed(app, client, field, value):
    payload = dict(SESSION, **{field: value})
    assert deliver(client, json.dumps(payload).encode()).status == 200
    [row] = stored_rows(app)
    assert row["handler_status"] == "failed"
    assert row["handler_error"].startswith("NormalizationError: event.created_at")
