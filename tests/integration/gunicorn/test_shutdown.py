"""SIGTERM during a burst: every delivery in flight is answered, every 200 is stored."""

from __future__ import annotations

import http.client
import json
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from plugnmeet_webhooks.cli.deliveries import post
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import events as events_table
from tests.support.gunicorn_server import gunicorn, wait_for_workers
from tests.support.helpers import KEY, SECRET, corpus_bodies
from validation import sign

pytestmark = pytest.mark.slow

GRACEFUL_TIMEOUT = 20  # gunicorn.conf.py


def _bodies(count: int) -> list[bytes]:
    template = json.loads(corpus_bodies()[2])  # participant_joined
    bodies = []
    for n in range(count):
        template["id"] = f"term-{n:04d}"
        template["participant"] |= {"identity": f"u-{n}", "sid": f"PA_t{n}"}
        bodies.append(json.dumps(template).encode())
    return bodies


def _stored_ids(url: str) -> set[str]:
    from sqlalchemy import select

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(select(events_table.c.event_id)).scalars())
    finally:
        engine.dispose()


def test_sigterm_in_a_burst_answers_every_delivery_in_flight(tmp_path, database_url):
    bodies = _bodies(200)
    answers: dict[str, int | str] = {}
    lock = threading.Lock()
    sent = threading.Event()

    with gunicorn(tmp_path, workers=2, PNM_DATABASE_URL=database_url) as server:
        wait_for_workers(server.process.pid, 2)
        stopped_at: list[float] = []

        def send(body: bytes) -> None:
            event_id = json.loads(body)["id"]
            try:
                status, _ = post(server.url, body, sign(body, KEY, SECRET), timeout=30)
            except (OSError, http.client.HTTPException) as exc:
                # Refused or reset once the listener closed: the sender sees it and retries.
                status = type(getattr(exc, "reason", exc)).__name__
            with lock:
                answers[event_id] = status
                if len(answers) == 60:
                    sent.set()

        def terminate() -> None:
            sent.wait(30)
            server.process.send_signal(signal.SIGTERM)
            stopped_at.append(time.monotonic())

        killer = threading.Thread(target=terminate)
        killer.start()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(send, bodies))
        killer.join()
        server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
        exited_after = time.monotonic() - stopped_at[0]
        log = server.log()

    statuses = list(answers.values())
    answered = {event_id for event_id, status in answers.items() if isinstance(status, int)}
    assert len(answered) >= 60
    assert {s for s in statuses if isinstance(s, int)} <= {200, 503}
    # Refused or reset: the listener had closed, or the connection still sat in its
    # backlog, never taken by a worker. A worker that took a request always answers it.
    assert {s for s in statuses if not isinstance(s, int)} <= {
        "ConnectionRefusedError",
        "ConnectionResetError",
    }
    # Whatever a worker took in, it answered: every delivery its handler saw, and every
    # stored event, got an answer; and every 200 is stored.
    handled = {f"term-{int(n):04d}" for n in re.findall(r"Participant u-(\d+) joined", log)}
    stored = _stored_ids(database_url)
    assert handled and handled <= answered
    assert stored <= answered
    acknowledged = {event_id for event_id, status in answers.items() if status == 200}
    assert acknowledged <= stored
    assert exited_after <= GRACEFUL_TIMEOUT, f"the master took {exited_after:.1f} s"
    assert "Traceback" not in log


def test_sigterm_while_the_database_is_locked_answers_every_delivery_503(tmp_path, sqlite_only):
    import sqlite3

    database = tmp_path / "locked.db"
    bodies = _bodies(8)
    answers: list[int | str] = []
    lock = threading.Lock()
    with gunicorn(
        tmp_path, workers=1, PNM_DATABASE_URL=f"sqlite:///{database}", PNM_DB_TIMEOUT="3"
    ) as server:
        wait_for_workers(server.process.pid, 1)
        holder = sqlite3.connect(database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # every write now waits for the busy timeout

        def send(body: bytes) -> None:
            try:
                status, _ = post(server.url, body, sign(body, KEY, SECRET), timeout=60)
            except (OSError, http.client.HTTPException) as exc:
                status = type(getattr(exc, "reason", exc)).__name__
            with lock:
                answers.append(status)

        senders = [threading.Thread(target=send, args=(body,)) for body in bodies]
        for sender in senders:
            sender.start()
        time.sleep(1.0)  # all eight are in the worker, waiting for the lock
        server.process.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(60)
        server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [503] * 8, answers
