"""A real gunicorn with two workers: signed deliveries, concurrent duplicates, the CLI."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from plugnmeet_webhooks.cli.deliveries import post
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import count_events
from plugnmeet_webhooks.storage.events import events as events_table
from tests.support.gunicorn_server import gunicorn, metric, race
from tests.support.helpers import KEY, ROOT, SAMPLES, SAMPLES_DIR, SECRET, corpus_path, run_flask
from validation import sign

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The access log names the worker pid of each request, to show both workers took part.
    with gunicorn(
        tmp_path_factory.mktemp("gunicorn"),
        PNM_ACCESS_LOG="1",
        GUNICORN_CMD_ARGS="--access-logformat 'access pid=%(p)s %(s)s %(r)s'",
    ) as running:
        yield running


def _count(server, event_id: str | None = None) -> int:
    engine = make_engine(server.database_url)
    try:
        if event_id is None:
            return count_events(engine)
        from sqlalchemy import func, select

        with engine.connect() as conn:
            query = select(func.count()).where(events_table.c.event_id == event_id)
            return conn.execute(query).scalar_one()
    finally:
        engine.dispose()


def test_real_gunicorn_answers_a_signed_sample(server):
    body = (SAMPLES_DIR / "session_ended.json").read_bytes()
    status, text = post(server.url, body, sign(body, KEY, SECRET))
    assert (status, json.loads(text)) == (200, {"status": "accepted"})
    assert _count(server, json.loads(body)["id"]) == 1
    assert "SUCCESS: Room 'product-review' lasted for 45 minutes." in server.log()


def test_concurrent_duplicates_through_two_workers_are_stored_once(server):
    copies, events = 8, 12
    bodies = [
        json.dumps(
            {"event": "participant_joined", "id": f"dup-{n}", "room": {"room_id": "r"}}
        ).encode()
        for n in range(events)
    ]

    for body in bodies:
        answers = race([server.url], body, copies)
        assert [status for status, _ in answers] == [200] * copies
        assert sorted(word for _, word in answers) == ["accepted"] + ["duplicate"] * (copies - 1)
        assert _count(server, json.loads(body)["id"]) == 1
    pids = {
        line.split("pid=")[1].split()[0]
        for line in server.log().splitlines()
        if line.startswith("access pid=") and " 200 POST " in line
    }
    assert len(pids) == 2, "both workers must have answered part of the race"


def test_send_command_delivers_every_sample(server, tmp_path):
    result = run_flask("send", "--url", server.url, *map(str, SAMPLES), database=tmp_path / "c.db")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(SAMPLES)
    assert all(line.startswith("200 ") for line in lines)


def test_send_says_what_to_do_when_nothing_listens(tmp_path):
    nowhere = "http://127.0.0.1:9/webhook-listener"
    result = run_flask(
        "send", "--url", nowhere, str(corpus_path("room_created")), database=tmp_path / "c.db"
    )
    assert result.returncode == 1
    assert "cannot reach http://127.0.0.1:9/webhook-listener" in result.stderr
    assert "make run" in result.stderr


def test_signed_curl_command_works_against_gunicorn(server, tmp_path):
    curl = subprocess.run(["which", "curl"], capture_output=True, text=True).stdout.strip()
    if not curl:
        pytest.skip("curl is not installed")
    sample = corpus_path("room_started")
    signed = run_flask("sign", "--url", server.url, str(sample), database=tmp_path / "c.db")
    # Run the printed command exactly as a user pastes it into a shell.
    answer = subprocess.run(signed.stdout, shell=True, cwd=ROOT, capture_output=True, text=True)  # noqa: S602
    assert json.loads(answer.stdout) == {"status": "accepted"}


def test_chunked_body_over_the_limit_is_413(tmp_path):
    with gunicorn(tmp_path, workers=1, PNM_MAX_BODY_BYTES="4096") as small:
        body = b'{"event":"room_started","pad":"' + b"x" * 10_000 + b'"}'
        assert _post_chunked(small.url, body, sign(body, KEY, SECRET)) == 413
        assert _count(small) == 0


def test_log_never_holds_tokens_secrets_or_bodies(server):
    body = json.dumps(
        {
            "event": "room_started",
            "id": "canary-event",
            "room": {"room_id": "r", "metadata": "CANARY-BODY-TEXT"},
        }
    ).encode()
    good = sign(body, KEY, SECRET)
    assert post(server.url, body, good)[0] == 200
    assert post(server.url, body + b" ", good)[0] == 403  # forged body: rejected and logged
    assert post(server.url, body, good[:-4] + "AAAA")[0] == 403
    log = server.log()
    assert "rejected delivery from 127.0.0.1" in log
    for secret_thing in (SECRET, good, good.split(".")[2], "CANARY-BODY-TEXT"):
        assert secret_thing not in log


def _post_chunked(url: str, body: bytes, token: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.putrequest("POST", parsed.path)
    for name, value in (
        ("Content-Type", "application/json"),
        ("Authorization", token),
        ("Transfer-Encoding", "chunked"),
    ):
        conn.putheader(name, value)
    conn.endheaders()
    for start in range(0, len(body), 1000):
        chunk = body[start : start + 1000]
        conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
    conn.send(b"0\r\n\r\n")
    status = conn.getresponse().status
    conn.close()
    return status


def test_chunked_delivery_within_the_limit_is_accepted(server):
    body = json.dumps({"event": "room_started", "id": "chunked-1", "pad": "y" * 2500}).encode()
    assert _post_chunked(server.url, body, sign(body, KEY, SECRET)) == 200
    assert _count(server, "chunked-1") == 1


def test_malformed_chunked_body_is_400_without_a_traceback(server):
    parsed = urllib.parse.urlsplit(server.url)
    raw = (
        f"POST {parsed.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = sock.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 400 ")
    assert "Traceback" not in server.log()


ACCEPTED = 'pnm_webhook_deliveries_total{outcome="accepted",reason=""}'


def test_metrics_add_up_both_workers(server):
    before = metric(server.url, ACCEPTED)
    bodies = [
        json.dumps({"event": "room_started", "id": f"metrics-{n}", "room": {"sid": "r"}}).encode()
        for n in range(40)
    ]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda b: post(server.url, b, sign(b, KEY, SECRET))[0], bodies))
    assert statuses == [200] * 40
    assert metric(server.url, ACCEPTED) - before == 40


def _raw_delivery(path: str, body: bytes, *, close: bool = False) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {sign(body, KEY, SECRET)}\r\nContent-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _read_answers(sock: socket.socket, count: int) -> list[tuple[str, dict[str, str], bytes]]:
    """Read ``count`` whole answers (each with a Content-Length) from a raw connection."""
    data, answers = b"", []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            lines = data[:head_end].decode("latin-1").split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:])
            end = head_end + 4 + int(fields["Content-Length"])
            if len(data) >= end:
                answers.append((lines[0], fields, data[head_end + 4 : end]))
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(answers)} of {count} answers"
        data += chunk
    assert data == b"", "nothing may follow the answers asked for"
    return answers


def test_deliveries_on_one_kept_alive_connection_are_answered_in_turn_and_in_order(server):
    path = urllib.parse.urlsplit(server.url).path
    bodies = [
        json.dumps({"event": "room_started", "id": f"kept-{n}", "room": {"sid": "k"}}).encode()
        for n in range(3)
    ]
    address = urllib.parse.urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        for body in bodies:  # one at a time: each answer before the next request
            sock.sendall(_raw_delivery(path, body))
            [(status, fields, answer)] = _read_answers(sock, 1)
            assert status == "HTTP/1.1 200 OK"
            assert json.loads(answer) == {"status": "accepted"}
            assert fields["Content-Type"] == "application/json"
            assert fields["Connection"] == "keep-alive"
            assert _count(server, json.loads(body)["id"]) == 1  # stored before its answer
        # Pipelined: two deliveries (the second a redelivery) in one write, answered in order.
        sock.sendall(_raw_delivery(path, bodies[0]) + _raw_delivery(path, bodies[1]))
        words = [json.loads(answer)["status"] for _, _, answer in _read_answers(sock, 2)]
        assert words == ["duplicate", "duplicate"]
        # A delivery that asks to close gets its answer, then the connection ends.
        last = json.dumps({"event": "room_started", "id": "kept-last", "room": {"sid": "k"}})
        sock.sendall(_raw_delivery(path, last.encode(), close=True))
        [(status, fields, _)] = _read_answers(sock, 1)
        assert (status, fields["Connection"]) == ("HTTP/1.1 200 OK", "close")
        assert sock.recv(100) == b""
    assert _count(server, "kept-last") == 1
