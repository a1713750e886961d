"""Retention: old raw bodies are purged, by the command or the pruner thread; the ledger stays."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import text

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import write_transaction
from tests.support.helpers import CORPUS, corpus, deliver, ledger_snapshot


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
