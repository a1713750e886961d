"""Storage: durability settings, exactly-once, and a locked database answered 503."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from dataclasses import replace

import pytest
from sqlalchemy import text

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import make_engine, write_transaction
from plugnmeet_webhooks.storage.events import count_events
from plugnmeet_webhooks.storage.migrate import upgrade_schema
from plugnmeet_webhooks.storage.sql import metadata
from tests.support.helpers import (
    KEY,
    SECRET,
    changed_body,
    corpus,
    corpus_json,
    deliver,
    handler_replaced,
    ledger_snapshot,
    metric,
    report,
    stored_body,
    stored_count,
    stored_rows,
)
from validation import sign

SESSION_ENDED = corpus_json("session_ended")

BODY = corpus("session_ended")


def test_sqlite_runs_with_wal_full_sync_and_a_busy_timeout(sqlite_only, app):
    engine = runtime.of(app).database()
    with engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000}


def test_writers_take_the_lock_up_front_and_readers_do_not(sqlite_only, app):
    from sqlalchemy import event

    engine = runtime.of(app).database()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("SELECT 1")
    count_events(engine)
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN"]


def test_default_database_lives_under_instance(tmp_path, monkeypatch):
    import config

    url = config.default_database_url(tmp_path)
    assert url == f"sqlite:///{tmp_path}/instance/plugnmeet-webhooks.db"
    make_engine(url).dispose()
    assert (tmp_path / "instance").is_dir()


def test_redelivery_changes_nothing_stored(app, client):
    assert deliver(client, BODY).json == {"status": "accepted"}
    before = stored_rows(app)

    # The same event through a second URL: same bytes, a token minted at another moment.
    other_token = sign(BODY, KEY, SECRET, now=time.time() - 7)
    assert other_token != sign(BODY, KEY, SECRET)
    changed_token_same_bytes = deliver(client, BODY, token=other_token)

    assert changed_token_same_bytes.json == {"status": "duplicate"}
    assert stored_rows(app) == before
    assert stored_body(app, before[0]["event_id"]) == BODY


@pytest.fixture
def locked_app(sqlite_only, settings, tmp_path):
    application = create_app(replace(settings, db_timeout=0.2))
    path = settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    yield application, holder
    holder.close()
    runtime.of(application).close()


def test_locked_database_is_503_then_the_retry_succeeds(locked_app, caplog):
    app, holder = locked_app
    client = app.test_client()
    holder.execute("BEGIN IMMEDIATE")

    answer = deliver(client, BODY)

    assert answer.status == 503
    assert answer.json == {"status": "unavailable"}
    holder.execute("ROLLBACK")
    assert stored_count(app) == 0
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "database is locked" in record.getMessage()
    assert "1764171000" not in caplog.text  # nothing of the body reaches the log

    retry = deliver(client, BODY)

    assert (retry.status, retry.json) == (200, {"status": "accepted"})
    assert stored_count(app) == 1


def test_failing_ledger_write_is_recorded_and_the_event_kept(app, app_runtime, client):
    from plugnmeet_webhooks.ledger import tables
    from plugnmeet_webhooks.ledger import writes as ledger

    def broken(event, ctx):
        ctx.write(ledger.session_write(event, ctx.received_at))
        # quantity is NOT NULL: this write fails in the database, after the one above ran.
        params = dict.fromkeys(c.name for c in tables.usage.columns) | {"artifact_id": "a"}
        ctx.write(
            ledger.Write(
                ledger.Statement.USAGE,
                params | {"event_key": "k", "artifact_type": "X", "unit": "u", "created_at": 1},
            )
        )

    app_runtime.registry.on("session_ended", replace=True)(broken)

    answer = deliver(client, BODY)

    assert (answer.status, answer.json) == (200, {"status": "accepted"})
    [row] = stored_rows(app)
    assert row["handler_status"] == "failed"
    assert row["handler_error"].startswith("IntegrityError")
    assert all(rows == [] for rows in ledger_snapshot(app).values()), "no half-written ledger"


def test_transient_database_error_in_a_handler_is_503_and_keeps_nothing(app, client):
    from sqlalchemy.exc import OperationalError

    def flaky(event, ctx):
        raise OperationalError("UPDATE sessions", {}, Exception("server closed the connection"))

    with handler_replaced(app, "session_ended", flaky):
        assert deliver(client, BODY).status == 503
        assert stored_count(app) == 0
    assert deliver(client, BODY).json == {"status": "accepted"}


def _an_event_from_before_the_ledger(settings) -> None:
    """A database at schema 0001 holding one event stored before the ledger existed."""
    engine = make_engine(settings.database_url)
    upgrade_schema(engine, "0001")
    with write_transaction(engine) as conn:  # an event stored before the ledger existed
        conn.execute(
            text(
                "INSERT INTO events (dedupe_key, event_id, event, room_id, room_sid, created_at,"
                " received_at, api_key, body_sha256, body) VALUES ('old-1', 'old-1',"
                " 'session_ended', 'weekly-standup', 'RM_hK3v9QpZt2Lx', 1764173565,"
                " 1764173566.0, :key, :digest, :body)"
            ),
            {"key": KEY, "digest": "0" * 64, "body": BODY},
        )
    engine.dispose()


def test_older_schema_is_refused_until_db_upgrade_which_fills_the_ledger(settings, caplog):
    _an_event_from_before_the_ledger(settings)

    app = create_app(settings)
    client, runner = app.test_client(), app.test_cli_runner()
    try:
        assert deliver(client, BODY.replace(b"dee82387", b"fee82387")).status == 503
        assert "run 'flask --app app db upgrade' once" in caplog.text
        assert count_events(runtime.of(app).engine) == 1

        result = runner.invoke(args=["db", "upgrade"])
        assert result.stdout.splitlines() == [
            "Database schema upgraded from 0001 to 0010.",
            "Filled the ledger from 1 stored events (0 failed).",
        ]
        [session] = report(app, "sessions")["rows"]
        assert session["billable_minutes"] == 43
        assert session["tenant"] == KEY, "an event stored before tenants belongs to its key"
    finally:
        runtime.of(app).close()

    upgraded = create_app(settings)
    try:
        answer = deliver(upgraded.test_client(), BODY.replace(b"dee82387", b"fee82387"))
        assert answer.json == {"status": "accepted"}
    finally:
        runtime.of(upgraded).close()


def test_migrations_build_exactly_the_tables_the_code_uses(app):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    # Each of these registers its tables on the metadata.
    import plugnmeet_webhooks.ledger.tables
    import plugnmeet_webhooks.storage.keys
    import plugnmeet_webhooks.storage.leases
    import plugnmeet_webhooks.storage.outbox
    import plugnmeet_webhooks.storage.passes  # noqa: F401

    with runtime.of(app).database().connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    assert differences == []


def _drop(app, table: str) -> None:
    with write_transaction(runtime.of(app).database()) as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")


def test_a_query_bug_in_a_report_is_a_500_not_an_outage(settings, caplog):
    app = create_app(replace(settings, admin_token="a-long-admin-token-for-tests"))
    try:
        _drop(app, "usage")  # as if the code queried a table the schema does not have
        response = app.test_client().get(
            "/api/usage", headers={"Authorization": "Bearer a-long-admin-token-for-tests"}
        )
    finally:
        runtime.of(app).close()
    assert (response.status_code, response.json) == (500, {"status": "internal_error"})
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "database error (a bug), answered 500" in record.getMessage()
    assert "unavailable" not in caplog.text


def test_a_ledger_write_bug_keeps_the_event_marked_failed(app, client):
    _drop(app, "attendance")
    body = corpus("participant_joined")  # a session and an attendance row
    assert deliver(client, body).json == {"status": "accepted"}
    [row] = stored_rows(app)
    assert row["handler_status"] == "failed"
    assert "attendance" in row["handler_error"]


def test_an_insert_bug_is_a_500_so_the_sender_retries_and_nothing_is_stored(app, client, caplog):
    _drop(app, "sessions")
    with write_transaction(runtime.of(app).database()) as conn:
        conn.exec_driver_sql("ALTER TABLE events RENAME TO events_elsewhere")
    answer = deliver(client, BODY)
    assert (answer.status, answer.json) == (500, {"status": "internal_error"})
    assert "database error (a bug), answered 500" in caplog.text
    with runtime.of(app).engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events_elsewhere").scalar() == 0


def test_a_ledger_fill_cut_short_is_taken_up_by_the_next_db_upgrade(settings, monkeypatch):
    import plugnmeet_webhooks.cli.repair as repair
    from plugnmeet_webhooks.storage.migrate import replays_due

    _an_event_from_before_the_ledger(settings)
    app = create_app(settings)
    runner = app.test_cli_runner()
    try:
        replay = repair.replay_events

        def cut_short(*args, **kwargs):
            raise KeyboardInterrupt  # Ctrl-C once the schema change has committed

        monkeypatch.setattr(repair, "replay_events", cut_short)
        assert runner.invoke(args=["db", "upgrade"]).exit_code != 0
        assert replays_due(runtime.of(app).engine) == ("*",)
        assert report(app, "sessions")["rows"] == []
        check = runner.invoke(args=["db", "check"]).stdout
        assert "The stored events are still to be applied again" in check

        monkeypatch.setattr(repair, "replay_events", replay)
        assert runner.invoke(args=["db", "upgrade"]).stdout.splitlines() == [
            "Database schema already at revision 0010.",
            "An earlier upgrade did not finish filling the ledger; resuming.",
            "Filled the ledger from 1 stored events (0 failed).",
        ]
        assert replays_due(runtime.of(app).engine) == ()
        [session] = report(app, "sessions")["rows"]
        assert session["billable_minutes"] == 43
    finally:
        runtime.of(app).close()


def test_the_same_id_with_another_body_is_a_logged_counted_conflict(app, client, caplog):
    first = corpus("session_ended")
    other = changed_body(SESSION_ENDED, created_at="1764173999")
    assert deliver(client, first).json == {"status": "accepted"}
    assert deliver(client, other).json == {"status": "conflict"}
    assert deliver(client, first).json == {"status": "duplicate"}
    [warning] = [r for r in caplog.records if r.levelname == "WARNING"]
    import hashlib

    message = warning.getMessage()
    assert hashlib.sha256(first).hexdigest() in message
    assert hashlib.sha256(other).hexdigest() in message
    assert metric(client, 'pnm_webhook_deliveries_total{outcome="conflict",reason=""}') == 1
    [session] = report(app, "sessions")["rows"]
    assert session["billable_minutes"] == 43, "the first body stays"


def test_the_sqlite_file_and_its_wal_are_made_for_their_owner_only(sqlite_only, app, client):
    assert deliver(client, corpus("room_created")).status == 200
    path = runtime.of(app).settings.database_url.removeprefix("sqlite:///")
    for name in (path, f"{path}-wal", f"{path}-shm"):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
