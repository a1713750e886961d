"""The ledger from the corpus: exact minutes, costs, attendance and files, in any order."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import (
    KEY,
    changed_body,
    corpus,
    corpus_bodies,
    deliver,
    handler_messages,
    handler_replaced,
    ledger_snapshot,
    report,
    reset_database,
    stored_count,
    stored_rows,
)

SID = "RM_hK3v9QpZt2Lx"


def _deliver_all(client, bodies):
    answers = [deliver(client, body) for body in bodies]
    assert [a.status for a in answers] == [200] * len(bodies)


def test_corpus_gives_the_exact_ledger(app, client):
    _deliver_all(client, corpus_bodies())

    [session] = report(app, "sessions")["rows"]
    assert session == {
        "tenant": KEY,
        "room_sid": SID,
        "room_id": "weekly-standup",
        "title": "Weekly stand-up",
        "started_at": "2025-11-26T15:30:00Z",
        "ended_at": "2025-11-26T16:12:45Z",
        "end_source": "created_at",
        "status": "ended",
        "duration_seconds": 2565,
        "billable_minutes": 43,
    }

    ledger = ledger_snapshot(app)
    usage = {row[0]: row for row in ledger["usage"]}
    assert len(usage) == 6
    costs = [row[9] for row in ledger["usage"]]
    assert sum(c for c in costs if c is not None) == 459_858  # micro-units: 0.459858
    [no_cost] = [row for row in ledger["usage"] if row[9] is None]
    assert no_cost[4:7] == ("SYNTHESIZED_SPEECH_USAGE", 5120, "characters")
    chat = usage["0b530516-efb1-484d-95bd-cf897f5eeb89"]
    assert chat[4:11] == (
        "AI_TEXT_CHAT_INTERACTION_USAGE",
        6690,
        "tokens",
        5400,
        1290,
        4845,
        "u-alice",
    )
    assert json.loads(chat[11]) == {"gemini-2.5-flash": 6690}
    summary_usage = usage["3b91b1f1-3fe9-427a-97ac-63d4595e44bc"]
    assert summary_usage[12] == "fe43ba26-c840-40ea-bc6d-4708dc585515"

    seconds = {r["identity"]: r["seconds"] for r in report(app, "attendance")["rows"]}
    assert seconds == {"u-alice": 2540, "u-bob": 2435, "u-carol": 2400}
    # Each join and leave once: Alice's, Bob's and Carol's, from the corpus's six events.
    marks = sorted((row[1], row[2], row[3]) for row in ledger["attendance"])
    assert marks == [
        ("PA_a1", "join", 1764171020), ("PA_a1", "leave", 1764173560),
        ("PA_b2", "join", 1764171065), ("PA_b2", "leave", 1764173500),
        ("PA_c3", "join", 1764171130), ("PA_c3", "leave", 1764173530),
    ]  # fmt: skip

    files = {row[4]: (row[5], row[6], row[7], row[8]) for row in ledger["files"]}
    assert files == {
        "RECORDING": ("node_01/RM_hK3v9QpZt2Lx/REC_7f3a.mp4", None, 187.42, "video/mp4"),
        "SPEECH_TRANSCRIPTION": (
            "speech_transcription/weekly-standup/transcript_RM_hK3v9QpZt2Lx.txt",
            48211,
            None,
            "text/plain",
        ),
        "MEETING_SUMMARY": (
            "meeting_summary/weekly-standup/summary_RM_hK3v9QpZt2Lx.txt",
            2210,
            None,
            "text/plain",
        ),
        "MEETING_ANALYTICS": (
            "analytics/weekly-standup/RM_hK3v9QpZt2Lx.json",
            9123,
            None,
            "application/json",
        ),
    }


def test_corpus_reports(app, client):
    _deliver_all(client, corpus_bodies())

    usage = report(app, "usage")
    assert usage["total"] == {
        "artifacts": 6,
        "quantity_by_unit": {"characters": 23350, "seconds": 4711, "tokens": 39450},
        "estimated_cost": 0.459858,
        "artifacts_without_cost": 1,
    }
    by_type = {r["artifact_type"]: r for r in usage["rows"]}
    assert by_type["SYNTHESIZED_SPEECH_USAGE"]["estimated_cost"] is None
    assert by_type["CHAT_TRANSLATION_USAGE"]["estimated_cost"] == 0.3646

    assert report(app, "rooms")["rows"] == [
        {
            "tenant": KEY,
            "room_id": "weekly-standup",
            "sessions": 1,
            "billable_minutes": 43,
            "attendees": 3,
            "attendee_minutes": 43 + 41 + 40,
            "ai_cost": 0.459858,
        }
    ]


def test_report_filters_by_day_and_room(app, client):
    _deliver_all(client, corpus_bodies())
    from datetime import date

    day = date(2025, 11, 26)
    assert report(app, "rooms", since=day, until=day)["total"]["billable_minutes"] == 43
    assert report(app, "rooms", since=date(2025, 11, 27))["rows"] == []
    assert report(app, "rooms", until=date(2025, 11, 25))["rows"] == []
    assert report(app, "usage", room="weekly-standup")["total"]["artifacts"] == 6
    assert report(app, "sessions", room="another-room")["rows"] == []


SHUFFLES = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SHUFFLES
@given(order=st.permutations(range(28)), repeats=st.lists(st.integers(0, 27), max_size=28))
def test_any_order_with_redeliveries_gives_the_same_ledger(app, client, order, repeats):
    bodies = corpus_bodies()
    reset_database(app)
    _deliver_all(client, bodies)
    expected = ledger_snapshot(app)
    reset_database(app)

    stream = [bodies[i] for i in order]
    for i in repeats:  # redeliveries, mixed in at random places
        stream.insert(random.Random(i).randrange(len(stream) + 1), bodies[i])
    _deliver_all(client, stream)

    assert ledger_snapshot(app) == expected
    assert stored_count(app) == 28


def test_a_resent_artifact_with_a_new_event_id_is_counted_once(app, client):
    body = corpus("artifact_created_chat_translation_usage")
    resent = json.loads(body)
    resent["id"] = "another-event-id"
    _deliver_all(client, [body, json.dumps(resent).encode()])
    assert stored_count(app) == 2
    assert report(app, "usage")["total"]["artifacts"] == 1


def test_session_without_session_ended_still_shows_up_marked(app, client):
    bodies = [b for b in corpus_bodies() if b'"session_ended"' not in b]
    _deliver_all(client, bodies)
    [session] = report(app, "sessions")["rows"]
    assert session["status"] == "no_session_ended"
    assert session["end_source"] == "room_finished"
    assert (session["duration_seconds"], session["billable_minutes"]) == (2562, 43)


def test_open_session_has_no_length_yet(app, client):
    _deliver_all(client, corpus_bodies()[:5])
    [session] = report(app, "sessions")["rows"]
    assert (session["status"], session["ended_at"], session["billable_minutes"]) == (
        "open",
        None,
        None,
    )


def test_leave_before_join_gives_the_same_attendance(app, client):
    bodies = corpus_bodies()
    _deliver_all(client, [bodies[12], bodies[3]])  # Bob leaves, then his join arrives
    stays = report(app, "attendance")["rows"]
    assert {r["identity"]: r["seconds"] for r in stays} == {"u-bob": 2435}


def test_rebuild_ledger_reproduces_it(app, client, runner, caplog):
    _deliver_all(client, corpus_bodies())
    before = ledger_snapshot(app)

    import handlers

    caplog.set_level("INFO")
    level = handlers.log.level
    caplog.clear()
    result = runner.invoke(args=["rebuild-ledger", "--yes"])

    assert result.exit_code == 0, result.output
    assert not handler_messages(caplog), "a rebuild is quiet"
    assert handlers.log.level == level
    assert "Rebuilt the ledger from 28 events (0 failed)." in result.output
    assert ledger_snapshot(app) == before


def test_replay_failed_repairs_events_whose_handler_failed(app, client, runner):
    def broken(event, ctx):
        raise RuntimeError("bug in the artifact handler")

    with handler_replaced(app, "artifact_created", broken):
        _deliver_all(client, corpus_bodies())
    failed = [r for r in stored_rows(app) if r["handler_status"] == "failed"]
    assert len(failed) == 9
    assert report(app, "usage")["rows"] == []

    result = runner.invoke(args=["replay", "--failed"])

    assert result.exit_code == 0, result.output
    assert "Replayed 9 events: 9 repaired, 0 failed." in result.output
    assert {r["handler_status"] for r in stored_rows(app)} == {"ok"}
    assert report(app, "usage")["total"]["estimated_cost"] == 0.459858


def test_replay_of_one_event_and_of_an_unknown_id(app, client, runner):
    _deliver_all(client, corpus_bodies())
    before = ledger_snapshot(app)
    one = runner.invoke(args=["replay", "--event-id", "dee82387-80cd-4feb-9ce2-b5c27d22cec7"])
    assert "Replayed 1 events: 0 repaired, 0 failed." in one.output
    assert ledger_snapshot(app) == before
    missing = runner.invoke(args=["replay", "--event-id", "nope"])
    assert missing.exit_code == 1
    assert "no stored event has the id 'nope'" in missing.output


def test_replay_still_failing_says_what_to_do(app, app_runtime, client, runner):
    def broken(event, ctx):
        raise RuntimeError("still broken")

    app_runtime.registry.on("session_ended", replace=True)(broken)
    _deliver_all(client, corpus_bodies())
    result = runner.invoke(args=["replay", "--failed"])
    assert result.exit_code == 1
    assert "1 events still fail" in result.output and "replay --failed" in result.output


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_report_command_formats(app, client, runner, fmt):
    _deliver_all(client, corpus_bodies())
    result = runner.invoke(args=["report", "rooms", "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        assert json.loads(result.output) == report(app, "rooms")
    elif fmt == "csv":
        assert result.output == (
            "tenant,room_id,sessions,billable_minutes,attendees,attendee_minutes,ai_cost\n"
            f"{KEY},weekly-standup,1,43,3,124,0.459858\n"
        )
    else:
        assert result.output.splitlines()[1].split() == [
            KEY,
            "weekly-standup",
            "1",
            "43",
            "3",
            "124",
            "0.459858",
        ]
        assert "Total: rooms 1, sessions 1, billable minutes 43" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "since must be a date like 2026-11-01, not 'yesterday'"),
        (["--since", "2026-11-02", "--until", "2026-11-01"], "is after until 2026-11-01"),
    ],
)
def test_report_command_rejects_bad_dates(runner, args, message):
    result = runner.invoke(args=["report", "usage", *args])
    assert result.exit_code == 2
    assert message in result.output


def _variant(body: bytes, **changes) -> bytes:
    """The same fact sent again under a new event id, with some values changed."""
    return changed_body(json.loads(body), id=f"variant-{sorted(changes.items())!r}", **changes)


def _conflicting_facts() -> list[bytes]:
    bodies = corpus_bodies()
    return [
        # The translation usage re-sent later with another quantity: the earliest copy counts.
        _variant(
            bodies[20],
            created_at="1764173999",
            room_artifact__metadata__character_count_usage__total_characters=1,
        ),
        # room_started repeated later with a new title: the newest title is the room's.
        _variant(bodies[1], created_at="1764174000", room__metadata='{"room_title": "Renamed"}'),
        # session_ended sent twice: the earliest end counts.
        _variant(bodies[16], created_at="1764173600"),
    ]


@SHUFFLES
@given(order=st.permutations(range(31)))
def test_conflicting_copies_give_the_same_ledger_in_any_order(app, client, order):
    stream = corpus_bodies() + _conflicting_facts()
    reset_database(app)
    _deliver_all(client, stream)
    expected = ledger_snapshot(app)
    reset_database(app)

    _deliver_all(client, [stream[i] for i in order])

    assert ledger_snapshot(app) == expected
    [session] = report(app, "sessions")["rows"]
    assert (session["title"], session["billable_minutes"]) == ("Renamed", 43)
    assert report(app, "usage")["total"]["quantity_by_unit"]["characters"] == 23350


def test_attendance_adds_stays_before_rounding_and_ends_open_stays_with_the_session(app, client):
    bodies = corpus_bodies()
    alice_again = json.loads(bodies[2])  # Alice reconnects: a new participant sid
    alice_again["id"], alice_again["created_at"] = "rejoin", "1764173000"
    alice_again["participant"] |= {"sid": "PA_a1b", "joined_at": "1764173000"}
    # Bob's and Carol's leaves are lost; Alice's first stay ends at 1764172000.
    alice_left = json.loads(bodies[14])
    alice_left["participant"]["joined_at"] = "1764171020"
    alice_left["created_at"] = "1764172000"
    stream = [b for i, b in enumerate(bodies) if i not in (12, 13, 14)]
    stream += [json.dumps(alice_left).encode(), json.dumps(alice_again).encode()]
    _deliver_all(client, stream)

    [room] = report(app, "rooms")["rows"]
    # Alice: 980 s + (session end 1764173565 - 1764173000 = 565 s) = 1545 s -> 26 min.
    # Bob: 1764173565 - 1764171065 = 2500 s -> 42 min; Carol: 2435 s -> 41 min.
    assert (room["attendees"], room["attendee_minutes"]) == (3, 26 + 42 + 41)


def test_replay_since_a_day_and_a_bad_day(app, client, runner):
    _deliver_all(client, corpus_bodies())
    future = runner.invoke(args=["replay", "--since", "2999-01-01"])
    assert "Replayed 0 events" in future.output
    past = runner.invoke(args=["replay", "--since", "2000-01-01"])
    assert "Replayed 28 events" in past.output
    bad = runner.invoke(args=["replay", "--since", "soon"])
    assert bad.exit_code == 2
    assert "--since must be a date like 2026-11-01, not 'soon'" in bad.output


def test_every_report_is_typed_and_its_json_keeps_the_field_order(app, client, runner):
    """Reports are typed rows and totals; their JSON (the stable form) has the fields of the
    dataclasses in order, and the days and files reports of the corpus are exactly these."""
    from dataclasses import fields

    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.ledger import periods, reports

    _deliver_all(client, corpus_bodies())
    for name in reports.REPORTS:
        row_type, total_type = reports.ROW_TYPES[name]
        with runtime.of(app).database().connect() as conn:
            built = reports.build(conn, name, periods.Filters())
        assert built.rows and all(type(row) is row_type for row in built.rows)
        assert type(built.total) is total_type
        result = runner.invoke(args=["report", name, "--format", "json"])
        assert result.exit_code == 0, result.output
        pairs = json.loads(result.output, object_pairs_hook=lambda kv: kv)
        as_json = dict(pairs)
        assert [key for key, _ in pairs] == ["rows", "total"]
        for row in as_json["rows"]:
            assert [key for key, _ in row] == [f.name for f in fields(row_type)]
        assert [key for key, _ in as_json["total"]] == [f.name for f in fields(total_type)]
        assert json.loads(result.output) == report(app, name) == built.as_dict()

    assert report(app, "days") == {
        "rows": [
            {
                "day": "2025-11-26",
                "sessions": 1,
                "billable_minutes": 43,
                "ai_cost": 0.459858,
                "ai_cost_by_type": {
                    "AI_TEXT_CHAT_INTERACTION_USAGE": 0.004845,
                    "AI_TEXT_CHAT_SUMMARIZATION_USAGE": 0.000596,
                    "CHAT_TRANSLATION_USAGE": 0.3646,
                    "MEETING_SUMMARY_USAGE": 0.0113,
                    "SPEECH_TRANSCRIPTION_USAGE": 0.078517,
                },
            }
        ],
        "total": {
            "days": 1,
            "sessions": 1,
            "billable_minutes": 43,
            "ai_cost": 0.459858,
            "artifacts_without_cost": 1,
        },
    }
    files = report(app, "files")
    assert files["total"] == {"files": 4}
    assert [(f["kind"], f["size_bytes"], f["size_mb"], f["created_at"]) for f in files["rows"]] == [
        ("MEETING_ANALYTICS", 9123, None, "2025-11-26T16:17:42Z"),
        ("MEETING_SUMMARY", 2210, None, "2025-11-26T16:14:42Z"),
        ("RECORDING", None, 187.42, "2025-11-26T16:14:17Z"),
        ("SPEECH_TRANSCRIPTION", 48211, None, "2025-11-26T16:12:52Z"),
    ]
    assert files["rows"][2] == {
        "tenant": KEY,
        "room_id": "weekly-standup",
        "kind": "RECORDING",
        "path": "node_01/RM_hK3v9QpZt2Lx/REC_7f3a.mp4",
        "size_bytes": None,
        "size_mb": 187.42,
        "mime_type": "video/mp4",
        "created_at": "2025-11-26T16:14:17Z",
    }
