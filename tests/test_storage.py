"""Storage: durability settings, exactly-once, and a locked database answered 503."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest
from helpers import CORPUS, deliver, stored_body, stored_count, stored_rows

from app import create_app
from storage import make_engine

BODY = CORPUS[16].read_bytes()  # session_ended


def test_sqlite_runs_with_wal_full_sync_and_a_busy_timeout(app):
    engine = app.extensions["pnm"].engine
    with engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "busy_timeout": 5000}


def test_writes_take_the_lock_up_front(app):
    engine = app.extensions["pnm"].engine
    statements: list[str] = []
    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert statements[0] == "BEGIN IMMEDIATE"


def test_default_database_lives_under_instance(tmp_path, monkeypatch):
    import config

    url = config.default_database_url(tmp_path)
    assert url == f"sqlite:///{tmp_path}/instance/plugnmeet-webhooks.db"
    make_engine(url).dispose()
    assert (tmp_path / "instance").is_dir()


def test_redelivery_changes_nothing_stored(app, client):
    assert deliver(client, BODY).json == {"status": "accepted"}
    before = stored_rows(app)

    changed_token_same_bytes = deliver(client, BODY)

    assert changed_token_same_bytes.json == {"status": "duplicate"}
    assert stored_rows(app) == before
    assert stored_body(app, before[0]["event_id"]) == BODY


@pytest.fixture
def locked_app(settings, tmp_path):
    application = create_app(replace(settings, db_timeout=0.2))
    path = settings.database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    yield application, holder
    holder.close()
    application.extensions["pnm"].engine.dispose()


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
