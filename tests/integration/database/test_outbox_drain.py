"""The outbox drains a backlog fast: batches per slot over kept-alive connections, several
dispatchers on one database never send a message twice, and a slow or rate-limited
destination holds back no other."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.metrics import Metrics
from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.workflows.dispatcher import SLOTS_PER_DESTINATION, Dispatcher
from tests.support.helpers import KEY, SECRET
from tests.support.sink import Answer, Sink

DESTINATIONS = ("fast", "slow", "limited")


def rules_file(tmp_path: Path, sink: Sink) -> str:
    """Three Slack-like destinations on one local server, and a rule that uses them all (the
    dispatcher sends whatever the outbox holds for them)."""
    path = tmp_path / "rules.toml"
    destinations = "".join(
        f'[destinations.{name}]\nkind = "slack"\nurl = "{sink.url("/" + name)}"\n\n'
        for name in DESTINATIONS
    )
    path.write_text(
        destinations
        + """[[rules]]
name = "joined"
on = "participant_joined"
send = ["fast", "slow", "limited"]
text = "{{ participant.name }} joined"
"""
    )
    return str(path)


@pytest.fixture
def drain_app(make_app, tmp_path, sink):
    def make():
        return make_app(api_keys={KEY: SECRET}, rules_file=rules_file(tmp_path, sink))

    return make


def queue(app, destination: str, count: int) -> None:
    """Put ``count`` messages for ``destination`` in the outbox, as rules would."""
    messages = [
        outbox.Message(
            message_id=outbox.message_id(KEY, "joined", destination, f"e-{n}"),
            tenant=KEY,
            rule="joined",
            destination=destination,
            event_key=f"e-{n}",
            event="participant_joined",
            room_id="room",
            body=b'{"text": "someone joined"}',
        )
        for n in range(count)
    ]
    with write_transaction(runtime.of(app).database()) as conn:
        assert outbox.enqueue(conn, messages) == count


def dispatcher(app) -> Dispatcher:
    rt = runtime.of(app)
    return Dispatcher(
        rt.database(), rt.rules.destinations, schedule=(0.05, 0.05), lease=30, metrics=Metrics()
    )


def wait_until(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the outbox did not get there in time")
        time.sleep(0.02)


def waiting(app) -> dict[str, int]:
    return outbox.backlog(runtime.of(app).database())


def keys(sink: Sink, path: str) -> list[str]:
    return [r.headers["idempotency-key"] for r in sink.at(path)]


def test_a_fast_destination_drains_a_backlog_in_batches_over_kept_alive_connections(
    drain_app, sink
):
    app = drain_app()
    count = 300
    queue(app, "fast", count)
    sending = dispatcher(app).start()
    try:
        sink.wait_for("/fast", count, timeout=60)
        wait_until(lambda: not waiting(app))
    finally:
        sending.stop()
    received = keys(sink, "/fast")
    assert len(received) == len(set(received)) == count
    stats = sending.stats
    # The old dispatcher claimed at most a destination's 4 free slots a cycle: 75 cycles at
    # least for 300 messages. Batches take many at once, in far fewer transactions.
    assert stats.largest_claim > SLOTS_PER_DESTINATION
    assert stats.cycles < count / SLOTS_PER_DESTINATION
    states, _ = outbox.counts(runtime.of(app).database())
    assert states["sent"] == count
    messages = outbox.list_messages(runtime.of(app).database(), limit=count)
    assert {m["attempts"] for m in messages} == {1}  # a message given back spent no attempt


def test_the_fast_destination_sees_far_fewer_connections_than_messages(drain_app, sink):
    app = drain_app()
    count = 200
    queue(app, "fast", count)
    sending = dispatcher(app).start()
    try:
        sink.wait_for("/fast", count, timeout=60)
    finally:
        sending.stop()
    # Each slot keeps its connection: one per slot, not one per message.
    assert 1 <= sink.connections <= SLOTS_PER_DESTINATION
    assert sink.connections < count / 10


def test_a_slow_and_a_rate_limited_destination_hold_back_no_other(drain_app, sink):
    sink.script("/slow", then=Answer(200, delay=2.0))
    sink.script("/limited", then=Answer(429, headers={"Retry-After": "1"}))
    app = drain_app()
    queue(app, "slow", 20)
    queue(app, "limited", 20)
    queue(app, "fast", 200)
    sending = dispatcher(app).start()
    try:
        sink.wait_for("/fast", 200, timeout=60)
        wait_until(lambda: "fast" not in waiting(app))
        # Every fast message is sent, and the others still have their backlogs.
        left = waiting(app)
        assert left["slow"] > 0
        assert left["limited"] > 0
        assert sink.at("/limited")  # asked, and answered 429 (the slow one records later)
    finally:
        sending.stop()
    assert len(set(keys(sink, "/fast"))) == 200


def test_two_dispatchers_on_one_database_never_send_a_message_twice(drain_app, sink):
    first, second = drain_app(), drain_app()  # two workers: one database, two engines
    count = 400
    queue(first, "fast", count)
    dispatchers = [dispatcher(first).start(), dispatcher(second).start()]
    try:
        sink.wait_for("/fast", count, timeout=60)
        wait_until(lambda: not waiting(first))
    finally:
        for one in dispatchers:
            one.stop()
    received = keys(sink, "/fast")
    assert len(received) == len(set(received)) == count
    assert sum(one.stats.claimed - one.stats.given_back for one in dispatchers) == count


def test_a_stopped_dispatcher_gives_back_what_its_batches_had_not_sent(drain_app, sink):
    sink.script("/slow", then=Answer(200, delay=1.0))
    app = drain_app()
    queue(app, "slow", 40)
    sending = dispatcher(app).start()
    sink_wait = time.monotonic() + 30
    while not sink.received and time.monotonic() < sink_wait:
        time.sleep(0.02)
    sending.stop()
    messages = outbox.list_messages(runtime.of(app).database(), limit=100)
    by_state: dict[str, list[dict]] = {}
    for message in messages:
        by_state.setdefault(message["state"], []).append(message)
    # Nothing is left under a lease for another dispatcher to wait out; what was not tried
    # is due again, with no attempt counted.
    assert "sending" not in by_state
    assert 1 <= len(by_state["sent"]) <= SLOTS_PER_DESTINATION
    assert len(by_state["pending"]) == 40 - len(by_state["sent"])
    assert {m["attempts"] for m in by_state["pending"]} == {0}
    assert all(m["next_attempt_at"] <= time.time() for m in by_state["pending"])
    assert sending.stats.given_back >= len(by_state["pending"])
