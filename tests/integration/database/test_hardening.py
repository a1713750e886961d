"""Hardening: what a verified delivery, a second tenant or a stray clock could once break.

Each test names the finding of the review it answers; every one failed before its fix.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace

import pytest
from sqlalchemy import text

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import write_transaction, writer
from tests.support.helpers import (
    CORPUS,
    KEY,
    OTHER_KEY,
    OTHER_SECRET,
    SECRET,
    corpus,
    corpus_json,
    deliver,
    ledger_snapshot,
    report,
    stored_count,
    stored_rows,
    stored_text,
)

SESSION_ENDED = corpus_json("session_ended")
JOINED = corpus_json("participant_joined")
TRANSLATION = corpus_json("artifact_created_chat_translation_usage")


def _body(payload: dict, **changes) -> bytes:
    """The payload with changes at dotted paths ('room.room_id'), as bytes."""
    copy = json.loads(json.dumps(payload))
    for path, value in changes.items():
        target = copy
        *parents, leaf = path.split("__")
        for name in parents:
            target = target[name]
        target[leaf] = value
    return json.dumps(copy).encode()


def _failed_with(app, reason: str) -> dict:
    [row] = [r for r in stored_rows(app) if r["handler_status"] == "failed"]
    assert reason in row["handler_error"], row["handler_error"]
    return row


# --- 1. sums overflow ------------------------------------------------------------------------


def _usage(n: int, cost) -> bytes:
    return _body(
        TRANSLATION,
        id=f"usage-{n}",
        room_artifact__artifact_id=f"artifact-{n}",
        room_artifact__metadata__character_count_usage__total_characters_estimated_cost=cost,
    )


@pytest.mark.parametrize("cost", [5e12, 9.3e12, 10**7])
def test_a_cost_over_its_bound_is_kept_but_marked_failed_and_reports_answer(app, client, cost):
    assert deliver(client, _usage(1, cost)).json == {"status": "accepted"}
    _failed_with(app, "over the bound")
    assert report(app, "usage")["rows"] == []
    assert report(app, "rooms")["total"]["ai_cost"] is None


def test_a_quantity_near_two_to_the_63_is_refused_the_same_way(app, client):
    body = _body(
        TRANSLATION, room_artifact__metadata__character_count_usage__total_characters=2**63 - 2
    )
    assert deliver(client, body).json == {"status": "accepted"}
    _failed_with(app, "over the bound")
    assert report(app, "usage")["rows"] == []


def test_cost_sums_are_exact_and_cannot_overflow(app, client):
    # Costs at the bound, sent the normal way, add up exactly.
    for n in range(3):
        assert deliver(client, _usage(n, 10**6)).json == {"status": "accepted"}
    assert report(app, "usage")["total"]["estimated_cost"] == 3_000_000.0
    # Rows far over any bound (put in behind the service's back) still add up, exactly:
    # three of them would overflow one 64-bit sum of micro-units.
    with write_transaction(runtime.of(app).database()) as conn:
        conn.execute(text("UPDATE usage SET cost_micros = 4000000000000000001"))
    assert report(app, "usage")["total"]["estimated_cost"] == 12_000_000_000_000.0
    [room] = report(app, "rooms")["rows"]
    assert room["ai_cost"] == 12_000_000_000_000.0


# --- 2. a long key is lost ----------------------------------------------------------------------


@pytest.mark.parametrize("field", ["room__room_id", "participant__sid", "participant__identity"])
def test_a_key_longer_than_any_index_holds_is_stored_marked_failed_not_503(app, client, field):
    body = _body(JOINED, **{field: "x" * 3000})
    assert deliver(client, body).json == {"status": "accepted"}
    row = _failed_with(app, "longer than 200 characters")
    assert row["room_id"] in (None, "weekly-standup")
    assert all(rows == [] for rows in ledger_snapshot(app).values())
    # A redelivery is a duplicate, not another failure: the sender stops.
    assert deliver(client, body).json == {"status": "duplicate"}


# --- 3. tenants bleed ---------------------------------------------------------------------------


def test_a_second_tenant_cannot_touch_the_firsts_sessions_or_events(app, client):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    # The other server sends the same room sid with an earlier end, and reuses an event id.
    early_end = _body(SESSION_ENDED, created_at="1764171060")
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


# --- 4. output injection ------------------------------------------------------------------------


def test_csv_cells_cannot_be_formulas(app, client, runner):
    titled = _body(
        SESSION_ENDED, room__metadata=json.dumps({"room_title": '=HYPERLINK("http://x")'})
    )
    assert deliver(client, titled).status == 200
    result = runner.invoke(args=["report", "sessions", "--format", "csv"])
    assert result.exit_code == 0, result.output
    import csv
    import io

    [row] = list(csv.DictReader(io.StringIO(result.output)))
    assert row["title"] == '\'=HYPERLINK("http://x")'


def test_table_output_escapes_what_a_terminal_would_act_on(app, client, runner):
    forged = _body(JOINED, id="forged", room__room_id="r\n9  2026  forged\x1b[2J")
    assert deliver(client, forged).status == 200
    result = runner.invoke(args=["events"])
    assert "\x1b" not in result.output
    assert len(result.output.splitlines()) == 2  # the header and one row, no forged row
    assert "r\\n9  2026  forged\\x1b[2J" in result.output


# --- 5. key probing through /metrics ------------------------------------------------------------


def _metric(client, line_start: str, token: str | None = None) -> float:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    page = client.get("/metrics", headers=headers).get_data(as_text=True)
    for line in page.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_public_metrics_cannot_tell_an_unknown_key_from_a_wrong_secret(app, client):
    body = corpus("room_created")
    deliver(client, body, key="guessed-key")
    deliver(client, body, secret=OTHER_SECRET)
    page = client.get("/metrics").get_data(as_text=True)
    assert 'reason="unknown_key"' not in page and 'reason="signature"' not in page
    assert _metric(client, 'pnm_webhook_deliveries_total{outcome="forbidden",reason="token"}') == 2


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
        assert _metric(client, reason, token) == 1
    finally:
        runtime.of(guarded).close()


# --- 6. report API errors -----------------------------------------------------------------------

ADMIN = "a" * 20 + "-admin-token"


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


# --- 7. forged addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forwarded", "stored"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("10.0.0.1, 203.0.113.5", "203.0.113.5"),  # one proxy: its entry, the last
        ("not an address" + "x" * 500, "127.0.0.1"),
        ("203.0.113.5;<script>", "127.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%zz ok", "127.0.0.1"),  # an IPv6 zone is free text
    ],
)
def test_a_forwarded_address_is_taken_only_when_it_is_one(settings, forwarded, stored):
    from validation import sign

    proxied = create_app(replace(settings, proxy_count=1))
    body = _body(JOINED, id=f"addr-{abs(hash(forwarded))}")
    token = sign(body, KEY, SECRET)
    headers = {"Authorization": token, "X-Forwarded-For": forwarded}
    try:
        response = proxied.test_client().post(
            "/webhook-listener", data=body, headers=headers, content_type="application/json"
        )
        assert response.status_code == 200
        [row] = stored_rows(proxied)
    finally:
        runtime.of(proxied).close()
    assert row["remote_addr"] == stored


# --- 8. times are trusted -----------------------------------------------------------------------


def test_a_creation_time_before_plugnmeet_existed_is_refused(app, client):
    assert deliver(client, _body(JOINED, room__creation_time="1")).status == 200
    _failed_with(app, "a time before 2020-01-01")
    assert all(rows == [] for rows in ledger_snapshot(app).values())


def test_a_late_session_ended_stamped_1_cannot_end_a_session_at_0(app, client):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    late = _body(SESSION_ENDED, id="late-end", created_at="1")
    assert deliver(client, late).status == 200
    _failed_with(app, "a time before 2020-01-01")
    [session] = report(app, "sessions")["rows"]
    assert session["billable_minutes"] == 43


def test_a_time_more_than_a_day_ahead_is_refused(app, client):
    import time

    ahead = str(int(time.time()) + 3 * 24 * 3600)
    assert deliver(client, _body(JOINED, created_at=ahead)).status == 200
    _failed_with(app, "more than a day after the event was received")


def test_a_session_that_ends_before_it_starts_is_refused(app, client):
    assert deliver(client, _body(SESSION_ENDED, created_at="1764170000")).status == 200
    _failed_with(app, "before it started")
    assert ledger_snapshot(app)["sessions"] == []


def test_a_genuine_late_event_is_billed(app, client):
    # The corpus session is a year old by now: delivered late, it is billed all the same.
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    assert [s["billable_minutes"] for s in report(app, "sessions")["rows"]] == [43]
    assert {r["handler_status"] for r in stored_rows(app)} == {"ok"}


# --- 10. silent conflicts -----------------------------------------------------------------------


def test_the_same_id_with_another_body_is_a_logged_counted_conflict(app, client, caplog):
    first = corpus("session_ended")
    other = _body(SESSION_ENDED, created_at="1764173999")
    assert deliver(client, first).json == {"status": "accepted"}
    assert deliver(client, other).json == {"status": "conflict"}
    assert deliver(client, first).json == {"status": "duplicate"}
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    import hashlib

    message = warning.getMessage()
    assert hashlib.sha256(first).hexdigest() in message
    assert hashlib.sha256(other).hexdigest() in message
    assert _metric(client, 'pnm_webhook_deliveries_total{outcome="conflict",reason=""}') == 1
    [session] = report(app, "sessions")["rows"]
    assert session["billable_minutes"] == 43, "the first body stays"


# --- 12. lock waits multiply ----------------------------------------------------------------------


def test_a_locked_batch_waits_once_not_once_per_event(sqlite_only, settings):
    import sqlite3

    from sqlalchemy import event

    from tests.integration.database.test_committer import _delivery

    app = create_app(replace(settings, db_timeout=0.2))
    rt = runtime.of(app)
    engine = rt.database()
    begins: list[str] = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda *args: begins.append(args[2]) if args[2].startswith("BEGIN") else None,
    )
    holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        batch = [_delivery(n, f"RM_{n}") for n in range(20)]
        results = rt.store_deliveries(writer(rt.engine), batch)  # as the writer thread does
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        rt.close()
    assert all(isinstance(r, Exception) for r in results)
    # The batch waited for the lock once; no event was tried again alone, to wait again.
    assert begins.count("BEGIN IMMEDIATE") == 1, begins


# --- 13. personal data forever ------------------------------------------------------------------


def test_the_sqlite_file_and_its_wal_are_made_for_their_owner_only(sqlite_only, app, client):
    assert deliver(client, corpus("room_created")).status == 200
    path = runtime.of(app).settings.database_url.removeprefix("sqlite:///")
    for name in (path, f"{path}-wal", f"{path}-shm"):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name


def _age_all(app, days: int) -> None:
    import time

    with write_transaction(runtime.of(app).database()) as conn:
        conn.execute(text("UPDATE events SET received_at = :t"), {"t": time.time() - days * 86400})


def test_purge_removes_old_raw_bodies_and_keeps_the_ledger(app, client, runner):
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    before = ledger_snapshot(app)
    _age_all(app, 40)

    dry = runner.invoke(args=["purge", "--days", "30", "--dry-run"])
    assert dry.exit_code == 0 and "28 events received before" in dry.output
    assert "would lose their raw bodies" in dry.output
    assert deliver(client, corpus("room_created")).json == {"status": "duplicate"}

    done = runner.invoke(args=["purge", "--days", "30"])
    assert done.exit_code == 0, done.output
    assert "Pruned the raw bodies of 28 events" in done.output
    with runtime.of(app).database().connect() as conn:
        bodies = conn.execute(text("SELECT body FROM events")).scalars().all()
    assert set(map(bytes, bodies)) == {b""}
    assert ledger_snapshot(app) == before, "minutes and costs stay"

    replayed = runner.invoke(args=["replay"])
    assert "Replayed 0 events" in replayed.output and "28 pruned events" in replayed.output
    refused = runner.invoke(args=["rebuild-ledger", "--yes"])
    assert refused.exit_code == 1 and "--drop-pruned" in refused.output
    assert ledger_snapshot(app) == before


def test_purge_needs_a_number_of_days(runner):
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 2 and "PNM_RETENTION_DAYS" in result.output


def test_the_pruner_thread_prunes_what_is_due(settings):
    app = create_app(replace(settings, retention_days=30))
    rt = runtime.of(app)
    try:
        for body in CORPUS[:3]:
            assert deliver(app.test_client(), body.read_bytes()).status == 200
        _age_all(app, 31)
        from plugnmeet_webhooks.storage.retention import Pruner

        assert Pruner(rt.engine, 30).run_once() == 3
        assert Pruner(rt.engine, 30).run_once() == 0
    finally:
        rt.close()


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


def _mallory(**participant) -> bytes:
    payload = corpus_json("participant_joined")
    payload["id"] = f"mallory-{len(participant)}-{sorted(participant.items())!r}"[:150]
    payload["participant"] |= {"sid": "PA_m", "identity": "u-mallory"} | participant
    return json.dumps(payload).encode()


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
    assert "u-dave" in _failed_with(app, "breakdown")["handler_error"]

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


@pytest.mark.parametrize("title", ["a\x00b", "\ud800", "t" * 501])
def test_a_room_title_that_is_not_plain_text_is_refused(app, client, title):
    body = _body(SESSION_ENDED, room__metadata=json.dumps({"room_title": title}))
    assert deliver(client, body).status == 200
    _failed_with(app, "room_title")
    assert ledger_snapshot(app)["sessions"] == []
