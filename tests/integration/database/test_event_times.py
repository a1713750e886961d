"""Times an event carries: one before plugNmeet existed, far ahead, or an end before its start
is refused; a genuine late event is billed."""

from __future__ import annotations

from tests.support.helpers import (
    CORPUS,
    changed_body,
    corpus_json,
    deliver,
    failed_with,
    ledger_snapshot,
    report,
    stored_rows,
)

JOINED = corpus_json("participant_joined")
SESSION_ENDED = corpus_json("session_ended")


def test_a_creation_time_before_plugnmeet_existed_is_refused(app, client):
    assert deliver(client, changed_body(JOINED, room__creation_time="1")).status == 200
    failed_with(app, "a time before 2020-01-01")
    assert all(rows == [] for rows in ledger_snapshot(app).values())


def test_a_late_session_ended_stamped_1_cannot_end_a_session_at_0(app, client):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    late = changed_body(SESSION_ENDED, id="late-end", created_at="1")
    assert deliver(client, late).status == 200
    failed_with(app, "a time before 2020-01-01")
    [session] = report(app, "sessions")["rows"]
    assert session["billable_minutes"] == 43


def test_a_time_more_than_a_day_ahead_is_refused(app, client):
    import time

    ahead = str(int(time.time()) + 3 * 24 * 3600)
    assert deliver(client, changed_body(JOINED, created_at=ahead)).status == 200
    failed_with(app, "more than a day after the event was received")


def test_a_session_that_ends_before_it_starts_is_refused(app, client):
    assert deliver(client, changed_body(SESSION_ENDED, created_at="1764170000")).status == 200
    failed_with(app, "before it started")
    assert ledger_snapshot(app)["sessions"] == []


def test_a_genuine_late_event_is_billed(app, client):
    # The corpus session is a year old by now: delivered late, it is billed all the same.
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    assert [s["billable_minutes"] for s in report(app, "sessions")["rows"]] == [43]
    assert {r["handler_status"] for r in stored_rows(app)} == {"ok"}
