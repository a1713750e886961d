"""A reload and a restart lose nothing while a sender like plugNmeet's streams deliveries.

plugNmeet gives a delivery three attempts over about three seconds, so a receiver that
refuses connections for longer than that, or resets them, loses events for good.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import events as events_table
from tests.support.gunicorn_server import (
    GUNICORN,
    gunicorn,
    server_environment,
    stop,
    wait_for_workers,
    worker_pids,
)
from tests.support.helpers import KEY, ROOT, SECRET, corpus_json
from tests.support.plugnmeet_sender import Delivery, stream
from tests.support.socket_activation import address, held_socket, spawn_with_socket

pytestmark = pytest.mark.slow

ROOMS = 8
RATE = 40.0  # deliveries a second, over all rooms
SECONDS = 9.0


def _rooms() -> dict[str, list[Delivery]]:
    """Each room's deliveries: distinct participants joining, ``RATE * SECONDS`` in all."""
    template = corpus_json("participant_joined")
    rooms: dict[str, list[Delivery]] = {}
    for r in range(ROOMS):
        room_id = f"restart-room-{r}"
        items = []
        for n in range(int(RATE * SECONDS / ROOMS)):
            event_id = f"restart-{r}-{n:03d}"
            template["id"] = event_id
            template["room"] |= {"room_id": room_id, "sid": f"RM_restart{r}"}
            template["participant"] |= {"identity": f"u-{r}-{n}", "sid": f"PA_r{r}n{n}"}
            items.append(Delivery(event_id, json.dumps(template).encode()))
        rooms[room_id] = items
    return rooms


def _stored_counts(url: str) -> Counter[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events_table.c.event_id, func.count()).group_by(events_table.c.event_id)
            )
            return Counter({event_id: count for event_id, count in rows})
    finally:
        engine.dispose()


def _assert_nothing_lost(rooms: dict[str, list[Delivery]], database_url: str) -> None:
    deliveries = [delivery for items in rooms.values() for delivery in items]
    failed = {d.event_id: d.attempts for d in deliveries if d.status != 200}
    assert failed == {}, f"{len(failed)} of {len(deliveries)} deliveries were lost"
    # The socket never closed: no attempt was refused.
    refused = [d.event_id for d in deliveries if "ConnectionRefusedError" in d.attempts]
    assert refused == []
    stored = _stored_counts(database_url)
    assert stored == Counter({d.event_id: 1 for d in deliveries})


def test_a_reload_loses_nothing(tmp_path, database_url):
    rooms = _rooms()
    with gunicorn(tmp_path, workers=2, PNM_DATABASE_URL=database_url) as server:
        old = set(wait_for_workers(server.process.pid, 2))
        new: set[int] = set()

        def reload() -> None:
            time.sleep(SECONDS / 3)
            server.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (len(new) == 2 and new.isdisjoint(old)):
                time.sleep(0.05)
                new.clear()
                new.update(worker_pids(server.process.pid))

        stream(server.url, KEY, SECRET, rooms, RATE, during=reload)
        log = server.log()
        assert server.process.poll() is None  # the master stayed

    # New workers (running the code on disk) replaced the old ones, and nothing was lost.
    assert len(new) == 2 and new.isdisjoint(old), (old, new)
    assert "Handling signal: hup" in log
    _assert_nothing_lost(rooms, database_url)
    assert "Traceback" not in log


@contextmanager
def _ended(processes: list[subprocess.Popen]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            stop(process)


def test_a_restart_on_a_socket_held_as_systemd_holds_it_loses_nothing(tmp_path, database_url):
    rooms = _rooms()
    environment = server_environment(tmp_path, port=8000, PNM_DATABASE_URL=database_url)
    log_path = tmp_path / "gunicorn.log"
    processes: list[subprocess.Popen] = []
    gap: list[float] = []
    with held_socket() as listener, _ended(processes):
        host, port = address(listener)

        def start() -> subprocess.Popen:
            process = spawn_with_socket(
                GUNICORN, listener, env=environment, cwd=ROOT, log_path=log_path
            )
            processes.append(process)
            wait_for_workers(process.pid, 2)
            return process

        first = start()

        def restart() -> None:
            time.sleep(SECONDS / 3)
            first.send_signal(signal.SIGTERM)
            first.wait(timeout=30)
            gap.append(time.monotonic())
            start()  # the way systemd starts the service again, with the same socket
            gap.append(time.monotonic())

        stream(f"http://{host}:{port}/webhook-listener", KEY, SECRET, rooms, RATE, during=restart)
        log = log_path.read_text(errors="replace")

    assert first.returncode == 0
    # The restart took a while (a new master checks the database and boots its workers);
    # deliveries sent meanwhile waited in the socket's queue.
    assert gap[1] - gap[0] > 0.5, f"the restart took only {gap[1] - gap[0]:.2f} s"
    assert log.count("Handling signal: term") == 1
    _assert_nothing_lost(rooms, database_url)
    assert "Traceback" not in log
