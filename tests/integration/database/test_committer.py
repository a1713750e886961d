"""Group commit: batches, outcomes per delivery, faults that reach only their own batch."""

from __future__ import annotations

import threading
import time

import pytest

from plugnmeet_webhooks.storage import commit
from plugnmeet_webhooks.storage import commit as committer_module
from plugnmeet_webhooks.storage.commit import CommitTimeout, GroupCommitter
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import StoredEvent
from plugnmeet_webhooks.storage.migrate import prepare_schema
from tests.support.helpers import corpus_bodies, deliver, stored_count, stored_rows


def test_concurrent_deliveries_share_commits_and_each_gets_its_own_answer(app, client):
    bodies = corpus_bodies()
    answers: dict[int, object] = {}
    barrier = threading.Barrier(8)

    def send(n: int) -> None:
        barrier.wait()
        answers[n] = deliver(app.test_client(), bodies[n % 4]).json["status"]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    # Four distinct events, each sent twice at the same moment: stored once each.
    assert sorted(answers.values()) == ["accepted"] * 4 + ["duplicate"] * 4
    assert stored_count(app) == 4


def test_a_fault_fails_every_delivery_of_its_batch_and_the_writer_recovers(app, monkeypatch):
    from sqlalchemy.exc import OperationalError

    calls = []
    real = commit.store_batch

    def flaky(engine, items, conn=None):
        calls.append(len(items))
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return real(engine, items, conn)

    monkeypatch.setattr(commit, "store_batch", flaky)
    client = app.test_client()
    body = corpus_bodies()[0]
    assert deliver(client, body).status == 503
    assert stored_count(app) == 0
    assert deliver(client, body).json == {"status": "accepted"}


def test_a_writer_that_does_not_answer_in_time_is_a_503(settings, monkeypatch):

    engine = make_engine(settings.database_url)
    prepare_schema(engine)
    slow = GroupCommitter(engine, wait_seconds=0.2)
    monkeypatch.setattr(commit, "store_batch", lambda *a, **k: time.sleep(1) or ["accepted"])
    stored = StoredEvent(
        dedupe_key="k", event_id="k", event="room_started", room_id=None, room_sid=None,
        created_at=None, received_at=1.0, api_key="k", remote_addr=None, body_sha256="0" * 64,
        body=b"{}",
    )  # fmt: skip
    with pytest.raises(CommitTimeout):
        slow.submit(stored, lambda conn: None)
    slow.close()
    engine.dispose()


def test_the_idle_writer_ends_and_the_next_delivery_starts_another(app, monkeypatch):
    monkeypatch.setattr(committer_module, "IDLE_SECONDS", 0.05)
    client = app.test_client()
    bodies = corpus_bodies()
    assert deliver(client, bodies[0]).status == 200
    writer = app.extensions["pnm"].committer._writer
    deadline = time.monotonic() + 5
    while app.extensions["pnm"].committer._writer is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.extensions["pnm"].committer._writer is None
    assert not writer.is_alive()
    assert deliver(client, bodies[1]).json == {"status": "accepted"}


def _item(n: int, room: str, handle=None):
    stored = StoredEvent(
        dedupe_key=f"e{n}", event_id=f"e{n}", event="room_started", room_id=room, room_sid=room,
        created_at=None, received_at=1.0, api_key="k", remote_addr=None, body_sha256="0" * 64,
        body=b"{}",
    )  # fmt: skip
    return stored, handle or (lambda conn: None)


def test_a_transient_fault_of_one_event_fails_only_that_event(app):
    from sqlalchemy.exc import OperationalError

    def deadlocked(conn):
        raise OperationalError("UPDATE sessions", {}, Exception("deadlock detected"))

    engine = app.extensions["pnm"].engine
    items = [_item(1, "RM_b"), _item(2, "RM_a", deadlocked), _item(3, "RM_c")]

    outcomes = commit.store_batch(engine, items)

    assert outcomes[0] == "accepted" and outcomes[2] == "accepted"
    assert isinstance(outcomes[1], OperationalError)
    assert stored_count(app) == 2


def test_outcomes_follow_the_order_of_the_deliveries_not_of_the_rooms(app):

    engine = app.extensions["pnm"].engine
    items = [_item(1, "RM_z"), _item(1, "RM_z"), _item(2, "RM_a")]
    assert commit.store_batch(engine, items) == ["accepted", "duplicate", "accepted"]


def test_a_delivery_that_times_out_before_its_batch_starts_is_never_stored(app, monkeypatch):

    engine = app.extensions["pnm"].engine
    started, release = threading.Event(), threading.Event()
    real = commit.store_batch

    def stuck_first(engine_, items, conn=None):
        if not started.is_set():
            started.set()
            release.wait(5)
        return real(engine_, items, conn)

    monkeypatch.setattr(commit, "store_batch", stuck_first)
    writer = GroupCommitter(engine, wait_seconds=0.3)
    first = threading.Thread(target=lambda: writer.submit(*_item(1, "RM_a")), daemon=True)
    first.start()
    started.wait(5)
    with pytest.raises(CommitTimeout, match="did not start it"):
        writer.submit(*_item(2, "RM_b"))
    release.set()
    first.join(5)
    writer.close()
    ids = {r["event_id"] for r in stored_rows(app)}
    assert ids == {"e1"}, "a delivery answered 503 before it started must not be stored later"
