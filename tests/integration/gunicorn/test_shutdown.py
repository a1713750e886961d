"""SIGTERM during a burst: every delivery in flight is answered, every 200 is stored."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from plugnmeet_webhooks.cli.deliveries import post
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import events as events_table
from tests.support.gunicorn_server import gunicorn, wait_for_workers, worker_pids
from tests.support.helpers import KEY, SECRET, corpus_json
from validation import sign

pytestmark = pytest.mark.slow

GRACEFUL_TIMEOUT = 20  # gunicorn.conf.py


def _bodies(count: int) -> list[bytes]:
    template = corpus_json("participant_joined")
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


def _deliver(url: str, body: bytes) -> tuple[float, int | str]:
    """Connect, then POST ``body``: when the connection was made, and the status or the
    name of the error (a reset, a refusal) the sender saw."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connected_at = float("inf")
    try:
        connection.connect()
        connected_at = time.monotonic()
        token = sign(body, KEY, SECRET)
        headers = {"Content-Type": "application/json", "Authorization": token}
        connection.request("POST", parts.path, body, headers)
        return connected_at, connection.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return connected_at, type(exc).__name__
    finally:
        connection.close()


def _wait_for_pending(pid: int, signum: int, timeout: float = 10) -> None:
    """Wait until a stopped process has ``signum`` pending (read from /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, mask = line.partition(":")
            if name in ("SigPnd", "ShdPnd") and int(mask, 16) & (1 << (signum - 1)):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never had signal {signum} pending")


def test_sigterm_in_a_burst_answers_every_connection_made_before_it(tmp_path, database_url):
    # Two workers of four threads and 32 connections at once; when the signal comes, 16
    # more connections wait in the socket's queue, not yet taken by a worker. Every
    # connection made before the signal is answered.
    bodies = _bodies(216)
    burst, queued = bodies[:200], bodies[200:]
    answers: dict[str, tuple[float, int | str]] = {}
    lock = threading.Lock()
    sent = threading.Event()
    environment = {"PNM_DATABASE_URL": database_url, "PNM_WORKER_THREADS": "4"}
    with gunicorn(tmp_path, workers=2, **environment) as server:
        wait_for_workers(server.process.pid, 2)
        signalled_at: list[float] = []

        def send(body: bytes) -> None:
            answer = _deliver(server.url, body)
            with lock:
                answers[json.loads(body)["id"]] = answer
                if len(answers) == 60:
                    sent.set()

        def terminate() -> None:
            sent.wait(30)
            # The workers held still, the kernel completes the next connections and queues
            # them, as it does whenever deliveries come faster than workers take them.
            workers = worker_pids(server.process.pid)
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            latecomers = [threading.Thread(target=send, args=(body,)) for body in queued]
            for thread in latecomers:
                thread.start()
            time.sleep(0.5)
            signalled_at.append(time.monotonic())
            server.process.send_signal(signal.SIGTERM)
            for pid in workers:
                _wait_for_pending(pid, signal.SIGTERM)  # the master has passed it on
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
            for thread in latecomers:
                thread.join(60)

        killer = threading.Thread(target=terminate)
        killer.start()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(send, burst))
        killer.join()
        server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
        exited_after = time.monotonic() - signalled_at[0]
        log = server.log()

    signalled = signalled_at[0]
    before = {event_id: status for event_id, (at, status) in answers.items() if at < signalled}
    assert len(before) >= 60
    assert {f"term-{n:04d}" for n in range(200, 216)} <= before.keys()  # queued ones
    # Every connection made before the signal got an answer: stored, or 503 to retry.
    assert {status for status in before.values()} <= {200, 503}, sorted(
        (event_id, status) for event_id, status in before.items() if status not in (200, 503)
    )
    # Later ones may be refused (the socket is closed) but never answered with anything else.
    later = {status for at, status in answers.values() if at >= signalled}
    assert later <= {200, 503, "ConnectionRefusedError", "ConnectionResetError"}
    answered = {event_id for event_id, (_, status) in answers.items() if isinstance(status, int)}
    handled = {f"term-{int(n):04d}" for n in re.findall(r"Participant u-(\d+) joined", log)}
    stored = _stored_ids(database_url)
    assert handled and handled <= answered
    assert stored <= answered
    acknowledged = {event_id for event_id, (_, status) in answers.items() if status == 200}
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
