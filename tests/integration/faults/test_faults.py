"""Faults: the database goes away, a worker is killed mid-burst, hosts race on duplicates."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from app import create_app
from config import Settings
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.cli.deliveries import post
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import events as events_table
from tests.support.gunicorn_server import gunicorn, metric, race, wait_for_workers
from tests.support.helpers import (
    KEY,
    OTHER_KEY,
    OTHER_SECRET,
    SECRET,
    corpus_bodies,
    corpus_json,
    deliver,
    ledger_snapshot,
)
from tests.support.postgres import fresh_schema
from tests.support.tcp_proxy import TcpProxy
from validation import sign

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_url(postgres_server):
    if postgres_server is None:
        from tests.support import postgres

        pytest.skip(postgres.skip_reason())
    with fresh_schema(postgres_server) as url:
        yield url


def _stored_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(events_table.c.event_id)).scalars())
    finally:
        engine.dispose()


def test_database_down_is_503_with_nothing_half_written_then_the_retry_succeeds(postgres_url):
    parsed = sa.make_url(postgres_url)
    proxy = TcpProxy(parsed.host, parsed.port).start()
    through_proxy = postgres_url.replace(f":{parsed.port}/", f":{proxy.port}/")
    app = create_app(
        Settings(
            api_keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
            database_url=through_proxy,
            db_timeout=1.0,
        )
    )
    client = app.test_client()
    bodies = corpus_bodies()
    try:
        assert deliver(client, bodies[0]).status == 200
        ledger_before = ledger_snapshot(app)
        proxy.cut()

        during = [deliver(client, body).status for body in bodies[1:6]]
        assert during == [503] * 5
        assert _stored_ids(postgres_url) == {json.loads(bodies[0])["id"]}
        assert client.get("/readyz").status_code == 503

        proxy.restore()
        retried = [deliver(client, body) for body in bodies[1:6]]
        assert [(a.status, a.json["status"]) for a in retried] == [(200, "accepted")] * 5
        assert len(_stored_ids(postgres_url)) == 6
        assert ledger_snapshot(app) != ledger_before  # the retried events were handled
        assert client.get("/readyz").status_code == 200
    finally:
        proxy.cut()
        runtime.of(app).close()


def _distinct_events(count: int) -> list[bytes]:
    template = corpus_json("participant_joined")
    bodies = []
    for n in range(count):
        template["id"] = f"burst-{n:05d}"
        template["participant"]["identity"] = f"u-{n}"
        template["participant"]["sid"] = f"PA_{n}"
        bodies.append(json.dumps(template).encode())
    return bodies


def test_sigkill_in_a_burst_loses_no_acknowledged_event(tmp_path, database_url):
    bodies = _distinct_events(400)
    acknowledged: list[str] = []
    lock = threading.Lock()
    killed: list[int] = []

    with gunicorn(tmp_path, workers=2, PNM_DATABASE_URL=database_url) as server:
        victims = wait_for_workers(server.process.pid, 2)

        def send(body: bytes) -> None:
            try:
                status, _ = post(server.url, body, sign(body, KEY, SECRET), timeout=15)
            except (OSError, http.client.HTTPException):
                return  # the connection died with the worker: the sender would retry
            if status == 200:
                with lock:
                    acknowledged.append(json.loads(body)["id"])
                    if len(acknowledged) == 100 and not killed:
                        os.kill(victims[0], signal.SIGKILL)
                        killed.append(victims[0])

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, bodies))
        respawned = wait_for_workers(server.process.pid, 2)
        accepted = metric(server.url, 'pnm_webhook_deliveries_total{outcome="accepted",reason=""}')

    assert killed, "the burst ended before a worker could be killed"
    assert len(acknowledged) > 200
    missing = set(acknowledged) - _stored_ids(database_url)
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert killed[0] not in respawned and len(respawned) == 2
    # The killed worker's counts stay on /metrics: nothing acknowledged goes uncounted.
    assert accepted >= len(acknowledged)


def test_duplicates_racing_through_two_hosts_store_once(tmp_path, postgres_url):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        gunicorn(tmp_path / "a", workers=2, PNM_DATABASE_URL=postgres_url) as first,
        gunicorn(tmp_path / "b", workers=2, PNM_DATABASE_URL=postgres_url) as second,
    ):
        for body in corpus_bodies()[:10]:
            answers = race([first.url, second.url], body, copies=8)
            assert [status for status, _ in answers] == [200] * 8
            assert sorted(word for _, word in answers) == ["accepted"] + ["duplicate"] * 7

    assert len(_stored_ids(postgres_url)) == 10


def test_worker_killed_inside_its_transaction_acknowledges_and_keeps_nothing(
    tmp_path, database_url
):
    marker = tmp_path / "stalled"
    body = json.dumps({"event": "slow_event", "id": "stalled-1", "room": {"sid": "RM_x"}}).encode()
    token = sign(body, KEY, SECRET)
    with gunicorn(
        tmp_path,
        workers=1,
        app="tests.support.slow_app:create_app()",
        PNM_DATABASE_URL=database_url,
        PNM_TEST_STALL_MARKER=str(marker),
    ) as server:
        [worker] = wait_for_workers(server.process.pid, 1)
        answers: list = []
        sender = threading.Thread(
            target=lambda: answers.append(_post_or_error(server.url, body, token)), daemon=True
        )
        sender.start()
        _wait_for(marker.exists, "the handler to start")
        os.kill(worker, signal.SIGKILL)
        sender.join(timeout=30)

        assert answers and answers[0] != 200, "no 200 may come from a killed transaction"
        assert "stalled-1" not in _stored_ids(database_url)

        wait_for_workers(server.process.pid, 1)
        status, text = post(server.url, body, token)  # the sender's retry
        assert (status, json.loads(text)) == (200, {"status": "accepted"})
    assert _stored_ids(database_url) == {"stalled-1"}


def _post_or_error(url: str, body: bytes, token: str) -> int | str:
    try:
        return post(url, body, token, timeout=30)[0]
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__


def _wait_for(condition, what: str, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_database_cut_inside_the_transaction_keeps_nothing_then_the_retry_succeeds(
    postgres_url, settings
):
    from tests.support.helpers import handler_replaced, report

    parsed = sa.make_url(postgres_url)
    proxy = TcpProxy(parsed.host, parsed.port).start()
    through_proxy = postgres_url.replace(f":{parsed.port}/", f":{proxy.port}/")
    app = create_app(Settings(api_keys={KEY: SECRET}, database_url=through_proxy, db_timeout=1.0))
    reference = create_app(settings)  # the same stream, delivered without a fault
    original = runtime.of(app).registry.handler("session_ended")

    def cut_then_handle(event, ctx):
        proxy.cut()  # the event row is inserted, the transaction is open
        original(event, ctx)

    bodies = corpus_bodies()
    try:
        for body in bodies:
            assert deliver(reference.test_client(), body).status == 200
        client = app.test_client()
        for body in bodies[:16]:
            assert deliver(client, body).status == 200
        with handler_replaced(app, "session_ended", cut_then_handle):
            assert deliver(client, bodies[16]).status == 503

        assert len(_stored_ids(postgres_url)) == 16
        proxy.restore()
        sessions = report(app, "sessions")["rows"]
        assert sessions[0]["status"] == "no_session_ended", "no half-written session end"
        for body in bodies[16:]:
            assert deliver(client, body).json == {"status": "accepted"}
        for name in ("sessions", "usage", "rooms"):
            assert report(app, name) == report(reference, name)
    finally:
        proxy.cut()
        runtime.of(app).close()
        runtime.of(reference).close()
