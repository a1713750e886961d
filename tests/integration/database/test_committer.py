"""Group commit: batches, outcomes per delivery, faults that reach only their own batch."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace

import pytest

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.batch import Delivery, Outcome, store_batch
from plugnmeet_webhooks.storage.committer import (
    MAX_BATCH,
    CommitterStopped,
    CommitTimeout,
    GroupCommitter,
)
from plugnmeet_webhooks.storage.engine import writer
from plugnmeet_webhooks.storage.events import StoredEvent
from tests.support.helpers import KEY, SECRET, corpus_bodies, deliver, stored_count, stored_rows
from validation import sign


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


def _delivery(n: int, room: str) -> Delivery:
    stored = StoredEvent(
        dedupe_key=f"e{n}", event_id=f"e{n}", event="room_started", room_id=room, room_sid=room,
        created_at=None, received_at=1.0, api_key="k", remote_addr=None, body_sha256="0" * 64,
        body=b"{}", tenant="k",
    )  # fmt: skip
    return Delivery(stored, {"event": "room_started", "id": f"e{n}"})


def _nothing(conn, delivery) -> None:
    """Apply nothing to the ledger."""


def test_a_fault_fails_every_delivery_of_its_batch_and_the_writer_recovers(app, app_runtime):
    from sqlalchemy.exc import OperationalError

    calls = []

    def flaky(conn, deliveries):
        calls.append(len(deliveries))
        if len(calls) == 1:
            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return app_runtime.store_deliveries(conn, deliveries)

    writer = GroupCommitter(app_runtime.database(), flaky, wait_seconds=5)
    try:
        with pytest.raises(OperationalError):
            writer.submit(_delivery(1, "RM_a"))
        assert stored_count(app) == 0
        assert writer.submit(_delivery(1, "RM_a")) is Outcome.ACCEPTED
    finally:
        writer.close()
    assert stored_count(app) == 1


def test_a_batch_that_does_not_commit_in_time_is_a_503_for_those_waiting(app_runtime):
    calls = []

    def second_is_slow(conn, deliveries):
        calls.append(len(deliveries))
        time.sleep(0.15 if len(calls) == 1 else 1.0)
        return [Outcome.ACCEPTED] * len(deliveries)

    writer = GroupCommitter(app_runtime.database(), second_is_slow, wait_seconds=0.4)
    answers: dict[int, object] = {}

    def send(n: int) -> None:
        try:
            answers[n] = writer.submit(_delivery(n, "RM_a"))
        except CommitTimeout as exc:
            answers[n] = exc

    leader = threading.Thread(target=send, args=(1,))
    leader.start()
    time.sleep(0.03)
    behind = [threading.Thread(target=send, args=(n,)) for n in (2, 3)]
    for t in behind:
        t.start()
        time.sleep(0.01)
    for t in (leader, *behind):
        t.join(5)
    writer.close()
    # The first batch held only the first delivery; the second, slow one held the other two.
    assert calls == [1, 2]
    assert answers[1] is Outcome.ACCEPTED
    assert answers[2] is Outcome.ACCEPTED  # it stored the slow batch itself
    assert isinstance(answers[3], CommitTimeout) and "did not commit" in str(answers[3])


def test_the_idle_writer_ends_and_the_next_delivery_starts_another(app, app_runtime):
    writer = GroupCommitter(
        app_runtime.database(), app_runtime.store_deliveries, wait_seconds=5, idle_seconds=0.05
    )
    try:
        assert writer.submit(_delivery(1, "RM_a")) is Outcome.ACCEPTED
        deadline = time.monotonic() + 5
        while writer.writer_running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not writer.writer_running
        assert writer.submit(_delivery(2, "RM_a")) is Outcome.ACCEPTED
    finally:
        writer.close()
    assert stored_count(app) == 2


def test_a_transient_fault_of_one_event_fails_only_that_event(app, app_runtime):
    from sqlalchemy.exc import OperationalError

    def deadlocked_on_a(conn, delivery):
        if delivery.stored.room_sid == "RM_a":
            raise OperationalError("UPDATE sessions", {}, Exception("deadlock detected"))

    deliveries = [_delivery(1, "RM_b"), _delivery(2, "RM_a"), _delivery(3, "RM_c")]

    outcomes = store_batch(app_runtime.database(), deliveries, deadlocked_on_a)

    assert outcomes[0] is Outcome.ACCEPTED and outcomes[2] is Outcome.ACCEPTED
    assert isinstance(outcomes[1], OperationalError)
    assert stored_count(app) == 2


def test_outcomes_follow_the_order_of_the_deliveries_not_of_the_rooms(app_runtime):
    deliveries = [_delivery(1, "RM_z"), _delivery(1, "RM_z"), _delivery(2, "RM_a")]
    assert store_batch(app_runtime.database(), deliveries, _nothing) == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.ACCEPTED,
    ]


def test_a_delivery_that_times_out_before_its_batch_starts_is_never_stored(app, app_runtime):
    started, release = threading.Event(), threading.Event()

    def stuck_first(conn, deliveries):
        if not started.is_set():
            started.set()
            release.wait(5)
        return app_runtime.store_deliveries(conn, deliveries)

    writer = GroupCommitter(app_runtime.database(), stuck_first, wait_seconds=0.3)
    first = threading.Thread(target=lambda: writer.submit(_delivery(1, "RM_a")), daemon=True)
    first.start()
    started.wait(5)
    with pytest.raises(CommitTimeout, match="did not start it"):
        writer.submit(_delivery(2, "RM_b"))
    release.set()
    first.join(5)
    writer.close()
    ids = {r["event_id"] for r in stored_rows(app)}
    assert ids == {"e1"}, "a delivery answered 503 before it started must not be stored later"


def test_a_stopping_receiver_answers_503_and_asks_for_a_retry_a_second_later(
    app, app_runtime, client, caplog
):
    first, second = corpus_bodies()[:2]
    assert deliver(client, first).status == 200
    app_runtime.stop_taking(grace=0)  # what SIGTERM does to a worker
    time.sleep(0.3)  # the grace of 0 s has passed
    token = sign(second, KEY, SECRET)
    headers = {"Authorization": token, "Content-Type": "application/json"}
    answer = client.post("/webhook-listener", data=second, headers=headers)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"  # another worker, or the next process
    assert answer.get_json() == {"status": "unavailable"}
    assert stored_count(app) == 1
    assert "the receiver is stopping" in caplog.text


def test_a_locked_batch_waits_once_not_once_per_event(sqlite_only, settings):
    import sqlite3

    from sqlalchemy import event

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


class _Gate:
    """A store that holds its first batch until opened, recording each batch's size."""

    def __init__(self, app_runtime) -> None:
        self.runtime = app_runtime
        self.holding, self.open = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def __call__(self, conn, deliveries):
        self.sizes.append(len(deliveries))
        if len(self.sizes) == 1:
            self.holding.set()
            assert self.open.wait(10)
        return self.runtime.store_deliveries(conn, deliveries)


def _record(answers: dict[int, list], app, n: int):
    """An answer that records its result and how many rows a fresh connection sees then."""

    def answer(result) -> None:
        answers.setdefault(n, []).append((result, stored_count(app)))

    return answer


@contextlib.contextmanager
def _held_first(app, app_runtime, lead=None, wait_seconds: float = 5):
    """A committer whose first delivery (e0) is held in its batch until the gate opens:
    yields the committer, the gate, the answers recorded and the leading thread, which runs
    ``lead(writer, answers)`` (by default, e0 handed over with its answer recorded)."""
    gate = _Gate(app_runtime)
    writer = GroupCommitter(app_runtime.database(), gate, wait_seconds=wait_seconds)
    answers: dict[int, list] = {}

    def handed_over(writer, answers) -> None:
        writer.submit_later(_delivery(0, "RM_a"), _record(answers, app, 0))

    leader = threading.Thread(target=lead or handed_over, args=(writer, answers))
    leader.start()
    try:
        assert gate.holding.wait(5)
        yield writer, gate, answers, leader
    finally:
        gate.open.set()
        leader.join(10)
        writer.close()


def test_deliveries_handed_over_are_answered_once_each_after_their_commit(app, app_runtime):
    with _held_first(app, app_runtime) as (writer, gate, answers, leader):
        for n in range(1, 6):  # a batch is in progress: these return at once, unanswered
            writer.submit_later(_delivery(n, "RM_a"), _record(answers, app, n))
        assert answers == {}
        gate.open.set()
        leader.join(10)
        assert not leader.is_alive()
    # The thread that led stored the five that waited too, in one batch, before it returned.
    assert gate.sizes == [1, 5]
    assert {n: [result for result, _ in got] for n, got in answers.items()} == {
        n: [Outcome.ACCEPTED] for n in range(6)
    }
    assert answers[0][0][1] == 1  # committed (seen from another connection) when answered
    assert all(seen == 6 for n in range(1, 6) for _, seen in answers[n])


def test_a_waiting_delivery_behind_handed_over_ones_gets_its_answer(app, app_runtime):
    waited: list[object] = []

    def waits(writer, _answers) -> None:
        waited.append(writer.submit(_delivery(0, "RM_a")))

    with _held_first(app, app_runtime, waits) as (writer, gate, answers, leader):
        writer.submit_later(_delivery(1, "RM_a"), _record(answers, app, 1))
        behind = threading.Thread(target=lambda: waited.append(writer.submit(_delivery(2, "RM_b"))))
        behind.start()
        time.sleep(0.1)  # it waits in the queue behind the handed-over one
        gate.open.set()
        leader.join(10)
        behind.join(10)
    assert waited == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert [result for result, _ in answers[1]] == [Outcome.ACCEPTED]
    assert stored_count(app) == 3


def test_a_stopping_committer_answers_handed_over_deliveries_with_stopped(app, app_runtime):
    with _held_first(app, app_runtime) as (writer, gate, answers, leader):
        writer.submit_later(_delivery(1, "RM_a"), _record(answers, app, 1))
        writer.stop_taking(0)  # what SIGTERM does: the queued one is refused
        deadline = time.monotonic() + 5
        while 1 not in answers and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.submit_later(_delivery(2, "RM_a"), _record(answers, app, 2))  # answered at once
        assert sorted(answers) == [1, 2]
        gate.open.set()
        leader.join(10)
    assert [result for result, _ in answers[0]] == [Outcome.ACCEPTED]
    for n in (1, 2):
        [(result, _)] = answers[n]
        assert isinstance(result, CommitterStopped)
    assert {r["event_id"] for r in stored_rows(app)} == {"e0"}


def test_an_answer_that_fails_fails_nothing_else(app, app_runtime, caplog):
    def broken(result) -> None:
        raise RuntimeError("the connection is gone")

    def hands_over_broken(writer, _answers) -> None:
        writer.submit_later(_delivery(0, "RM_a"), broken)

    with _held_first(app, app_runtime, hands_over_broken) as (writer, gate, answers, leader):
        writer.submit_later(_delivery(1, "RM_a"), broken)
        writer.submit_later(_delivery(2, "RM_a"), _record(answers, app, 2))
        gate.open.set()
        leader.join(10)
    assert [result for result, _ in answers[2]] == [Outcome.ACCEPTED]
    assert stored_count(app) == 3
    assert caplog.text.count("the answer to a stored delivery could not be given") == 2


def test_a_waiting_delivery_queued_behind_a_full_batch_of_handed_over_ones_gets_its_own_answer(
    app, app_runtime
):
    results: dict[str, object] = {}

    def waits(writer, name: str, n: int) -> None:
        results[name] = writer.submit(_delivery(n, "RM_a"))

    def leads(writer, _answers) -> None:
        waits(writer, "leader", 0)

    with _held_first(app, app_runtime, leads, wait_seconds=10) as (writer, gate, answers, leader):
        later = range(1, MAX_BATCH + 6)  # more than a batch takes
        for n in later:
            writer.submit_later(_delivery(n, "RM_a"), _record(answers, app, n))
        behind = threading.Thread(target=waits, args=(writer, "behind", 1000))
        behind.start()
        deadline = time.monotonic() + 5
        while not any(job.delivery.stored.event_id == "e1000" for job in writer._queue):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gate.open.set()
        leader.join(10)
        behind.join(10)
    # The lead went to the thread behind; its delivery was not in the first batch it stored,
    # so it went on until its own was stored, then returned with its own outcome.
    assert results == {"leader": Outcome.ACCEPTED, "behind": Outcome.ACCEPTED}
    assert gate.sizes == [1, MAX_BATCH, 6]
    assert sorted(answers) == list(later)
    assert all([result for result, _ in answers[n]] == [Outcome.ACCEPTED] for n in later)


def test_a_waiting_leader_returns_once_its_own_is_stored_and_another_thread_leads_the_rest(
    app, app_runtime
):
    holding_second, open_second = threading.Event(), threading.Event()
    sizes: list[int] = []
    first = _Gate(app_runtime)

    def store(conn, deliveries):
        sizes.append(len(deliveries))
        if len(sizes) == 2:
            holding_second.set()
            assert open_second.wait(10)
            return app_runtime.store_deliveries(conn, deliveries)
        return first(conn, deliveries)

    writer = GroupCommitter(app_runtime.database(), store, wait_seconds=10)
    answers: dict[int, list] = {}
    leader = threading.Thread(target=writer.submit, args=(_delivery(0, "RM_a"),))
    leader.start()
    try:
        assert first.holding.wait(5)
        for n in (1, 2, 3):
            writer.submit_later(_delivery(n, "RM_a"), _record(answers, app, n))
        first.open.set()
        assert holding_second.wait(5)
        # The second batch (the handed-over three) is being stored by another thread: the
        # caller that waited for its own delivery has its answer already.
        leader.join(10)
        assert not leader.is_alive()
        assert answers == {}
        open_second.set()
        deadline = time.monotonic() + 10
        while len(answers) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        first.open.set()
        open_second.set()
        writer.close()
    assert sizes == [1, 3]
    assert all([result for result, _ in answers[n]] == [Outcome.ACCEPTED] for n in (1, 2, 3))


def test_handed_over_deliveries_of_a_failed_batch_are_told_the_fault(app, app_runtime):
    from sqlalchemy.exc import OperationalError

    def down(conn, deliveries):
        raise OperationalError("BEGIN", {}, Exception("database is locked"))

    writer = GroupCommitter(app_runtime.database(), down, wait_seconds=5)
    answers: dict[int, list] = {}
    try:
        writer.submit_later(_delivery(1, "RM_a"), _record(answers, app, 1))
    finally:
        writer.close()
    [(result, seen)] = answers[1]
    assert isinstance(result, OperationalError) and seen == 0
