"""The outbox against destinations that limit, drip and pile up: rate limits spend no
retries, an attempt has a hard deadline and keeps its lease, the poll stays cheap."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.metrics import Metrics
from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.workflows.dispatcher import Dispatcher
from tests.support.chat import ChatServer
from tests.support.helpers import KEY, SECRET, corpus_json, deliver

JOIN = corpus_json("participant_joined", 3)  # Carol joins weekly-standup


def joins(count: int, prefix: str = "j") -> list[bytes]:
    """``count`` participant_joined deliveries, each of another person."""
    bodies = []
    for n in range(count):
        body = json.loads(json.dumps(JOIN))
        body["id"] = f"{prefix}-{n:03d}"
        body["participant"] |= {"sid": f"PA_{prefix}{n}", "identity": f"u-{prefix}{n}"}
        bodies.append(json.dumps(body).encode())
    return bodies


def rules_file(tmp_path: Path, url: str, name: str = "rules.toml") -> str:
    path = tmp_path / name
    path.write_text(
        f"""
[destinations.chat]
kind = "slack"
url = "{url}"

[[rules]]
name = "joined"
on = "participant_joined"
send = ["chat"]
text = "{{{{ participant.name }}}} joined {{{{ room.room_id }}}}"
"""
    )
    return str(path)


@pytest.fixture
def rules_app(make_app, tmp_path):
    def make(url: str, **changes):
        return make_app(
            api_keys={KEY: SECRET},
            rules_file=rules_file(tmp_path, url),
            outbox_retries=(0.05, 0.05, 0.05),
            **changes,
        )

    return make


def _messages(app) -> list[dict]:
    return outbox.list_messages(runtime.of(app).database(), limit=1000)


@pytest.mark.parametrize(("retry_after", "count"), [("1", 30), ("0", 8)])
def test_a_chat_limit_of_one_message_a_second_kills_no_message(rules_app, retry_after, count):
    with ChatServer("slack", interval=1.0, retry_after=retry_after) as slack:
        app = rules_app(slack.url)
        client = app.test_client()
        for body in joins(count):
            assert deliver(client, body).status == 200
        runtime.of(app).dispatcher().start()
        taken = slack.wait_for(count, timeout=30 + 3 * count)
        assert len(taken) == count
        assert slack.refused and {status for status, _ in slack.refused} == {429}
    messages = _messages(app)
    assert [m["state"] for m in messages] == ["sent"] * count
    limited = [m for m in messages if m["rate_limited"]]
    assert limited, "the destination's limit was reached"
    # Three retries are allowed; the "slow down" answers spent none of them.
    assert all(m["attempts"] - m["rate_limited"] == 1 for m in messages)
    assert max(m["rate_limited"] for m in messages) >= 1
    page = client.get("/metrics").get_data(as_text=True)
    assert 'pnm_outbox_attempts_total{destination="chat",outcome="rate_limited"}' in page


def test_rate_limits_have_a_budget_in_time_not_in_count(settings, tmp_path):
    with ChatServer("slack", interval=3600.0) as slack:  # after one message, always 429
        app = create_app(
            replace(settings, rules_file=rules_file(tmp_path, slack.url), outbox_retries=(0.05,))
        )
        rt = runtime.of(app)
        try:
            client = app.test_client()
            for body in joins(2):
                assert deliver(client, body).status == 200
            dispatcher = Dispatcher(
                rt.database(),
                rt.rules.destinations,
                schedule=(0.05,),
                lease=30,
                metrics=Metrics(),
                rate_limit_budget=4.0,
            ).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                states = sorted(m["state"] for m in _messages(app))
                if states == ["dead", "sent"]:
                    break
                time.sleep(0.1)
            dispatcher.stop()
            [dead] = [m for m in _messages(app) if m["state"] == "dead"]
            # More "slow down" answers than the schedule has retries (one), and it lived on
            # until its time ran out.
            assert dead["last_error"] == "HTTP 429"
            assert dead["attempts"] == dead["rate_limited"] >= 3
        finally:
            rt.close()


class Dripper:
    """A destination that answers a byte at a time, every ``every`` seconds, for ever (or
    at once with a 200, once told to)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.arrived: list[float] = []
        self.fixed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.arrived.append(time.monotonic())
            if self.fixed.is_set():
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            try:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000:
                    if self._stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(self.every)
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def test_a_dripping_destination_is_cut_at_the_deadline_and_never_sent_twice(rules_app):
    dripper = Dripper(every=0.5)
    try:
        # Two hosts on one database, leases far shorter than an attempt may last.
        first = rules_app(dripper.url, outbox_lease=4.0)
        second = rules_app(dripper.url, outbox_lease=4.0)
        [body] = joins(1)
        assert deliver(first.test_client(), body).status == 200
        started = time.monotonic()
        runtime.of(first).dispatcher().start()
        runtime.of(second).dispatcher().start()
        while not dripper.arrived and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert len(dripper.arrived) == 1
        dripper.fixed.set()  # the next attempt gets its answer at once
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            [message] = _messages(first)
            if message["state"] == "sent":
                break
            time.sleep(0.1)
        assert message["state"] == "sent"
        first_attempt, second_attempt = dripper.arrived
        # The open attempt kept its lease: nobody sent the message again while it was open;
        # and it was cut at its deadline, long before the drip would have ended.
        assert second_attempt - first_attempt >= 9
        assert second_attempt - first_attempt < 30
        assert message["attempts"] == 2
    finally:
        dripper.close()


def _plan(conn, query: str, params: dict) -> str:
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}", params).all()
        return " ".join(str(row[-1]) for row in rows)
    conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table: show what it could use
    rows = conn.exec_driver_sql(f"EXPLAIN {query}", params).all()
    return " ".join(str(row[0]) for row in rows)


def test_the_poll_reads_only_the_waiting_messages_through_their_index(app):
    engine = runtime.of(app).database()
    statement = outbox.due_query(["chat"], time.time())
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = _plan(conn, str(compiled), {})
    assert "ix_outbox_waiting" in plan, plan


def test_metrics_show_each_destinations_backlog(rules_app):
    app = rules_app("http://127.0.0.1:9/hook")  # nothing sends here: the dispatcher is off
    client = app.test_client()
    for body in joins(3):
        assert deliver(client, body).status == 200
    page = client.get("/metrics").get_data(as_text=True)
    assert 'pnm_outbox_backlog{destination="chat"} 3.0' in page
    assert 'pnm_outbox_messages{state="pending"} 3.0' in page


def test_retention_deletes_old_sent_messages_and_empties_old_bodies(rules_app):
    app = rules_app("http://127.0.0.1:9/hook")
    client = app.test_client()
    for body in joins(3):
        assert deliver(client, body).status == 200
    engine = runtime.of(app).database()
    ids = [m["id"] for m in _messages(app)]
    long_ago = time.time() - 40 * 86400
    with write_transaction(engine) as conn:
        conn.execute(outbox.outbox.update().values(created_at=long_ago))
        conn.execute(
            outbox.outbox.update().where(outbox.outbox.c.id == ids[0]).values(state="sent")
        )
        conn.execute(
            outbox.outbox.update().where(outbox.outbox.c.id == ids[1]).values(state="dead")
        )
    cli = app.test_cli_runner()
    dry = cli.invoke(args=["purge", "--days", "30", "--dry-run"])
    assert "3 outbox messages made before" in dry.output
    done = cli.invoke(args=["purge", "--days", "30"])
    assert done.exit_code == 0, done.output
    assert "Pruned 3 outbox messages" in done.output
    by_id = {m["id"]: m for m in _messages(app)}
    assert ids[0] not in by_id  # sent: gone
    assert by_id[ids[1]]["state"] == "dead" and by_id[ids[1]]["pruned_at"]
    assert by_id[ids[2]]["state"] == "dead"  # pending without its body cannot be sent
    assert by_id[ids[2]]["last_error"] == "pruned by retention before it could be sent"
    with engine.connect() as conn:
        bodies = conn.execute(text("SELECT body FROM outbox")).scalars().all()
    assert [bytes(b) for b in bodies] == [b"", b""]
    assert outbox.retry(engine, dead=True) == 0, "a message without its body is not sent again"


class RawAnswer:
    """A destination that answers every request with the same raw bytes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1
                conn.sendall(self.answer)

    def close(self) -> None:
        self._listener.close()


def test_a_hostile_retry_after_is_ignored_and_the_answer_still_settles(rules_app):
    # Latin-1 byte 0xB2 reads as "²", which Python calls a digit but cannot turn into a number.
    destination = RawAnswer(
        b"HTTP/1.1 400 Bad Request\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n"
    )
    try:
        app = rules_app(destination.url, outbox_lease=5.0)
        [body] = joins(1)
        assert deliver(app.test_client(), body).status == 200
        runtime.of(app).dispatcher().start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            [message] = _messages(app)
            if message["state"] == "dead":
                break
            time.sleep(0.1)
        assert (message["state"], message["attempts"], message["last_error"]) == (
            "dead",
            1,
            "HTTP 400",
        )
        time.sleep(0.5)
        assert destination.requests == 1
    finally:
        destination.close()


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1e9", "-5", "Wed, 99 Foo 2026", "9" * 400])
def test_retry_after_reads_only_what_http_allows(value):
    from plugnmeet_webhooks.workflows.dispatcher import MAX_RETRY_AFTER, retry_after

    found = retry_after(value, time.time())
    assert found is None or 0 <= found <= MAX_RETRY_AFTER


def test_a_message_sent_again_by_hand_has_its_rate_limit_budget_again(rules_app):
    app = rules_app("http://127.0.0.1:9/hook")
    [body] = joins(1)
    assert deliver(app.test_client(), body).status == 200
    engine = runtime.of(app).database()
    with write_transaction(engine) as conn:
        conn.execute(
            outbox.outbox.update().values(state="dead", created_at=time.time() - 3 * 86400)
        )
    assert outbox.retry(engine, dead=True) == 1
    [claimed] = outbox.cycle(engine, [], {"chat": 1}, lease=30)
    assert time.time() - claimed.waiting_since < 60  # not three days: the budget starts again
