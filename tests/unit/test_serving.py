"""The worker's answer given later, on real sockets: a full send buffer does not hold up the
thread that answers, and the connection goes back to the worker's loop only once answered."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.workers.gthread import TConn

from plugnmeet_webhooks.serving import (
    _LATER,
    ANSWER_LATER,
    DrainingWorker,
    _AnsweredLater,
    _ClosingQueue,
)

BODY = json.dumps({"status": "accepted"}).encode()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


class _Loop:
    """What the worker's loop would do with a connection handed back: note it."""

    def __init__(self) -> None:
        self.finished: list[tuple[TConn, bool]] = []

    def finish_request(self, conn: TConn, fs) -> None:
        self.finished.append((conn, fs.result()))


@pytest.fixture
def worker():
    """A DrainingWorker with only what answering needs: its pool, log and method queue."""
    cfg = Config()
    made = DrainingWorker.__new__(DrainingWorker)
    made.cfg = cfg
    made.log = Logger(cfg)
    made.tpool = ThreadPoolExecutor(1)
    made.method_queue = _ClosingQueue()
    made.method_queue.init()
    made.alive, made.nr, made.max_requests = True, 0, 1000
    made.keepalived_conns, made.max_keepalived = deque(), 100
    made._answered, made._hand_back_due = deque(), False
    loop = _Loop()
    made.finish_request = loop.finish_request  # type: ignore[method-assign]
    made.loop = loop
    yield made
    made.tpool.shutdown(wait=True)
    made.method_queue.close()


@pytest.fixture
def connected():
    """A loopback TCP connection: (the server's end, the client's end)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    yield server, client
    server.close()
    client.close()


def _request(worker, server: socket.socket, client: socket.socket, extra: str = ""):
    """Send one request from the client; parse it on the server's end as gunicorn does."""
    client.sendall(
        f"POST /hook HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 2\r\n\r\n{{}}".encode()
    )
    conn = TConn(worker.cfg, server, client.getsockname(), server.getsockname())
    conn.sock.setblocking(True)
    conn.init()
    req = next(conn.parser)
    resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, worker.cfg)
    assert req.body.read() == b"{}"
    return conn, _AnsweredLater(lambda respond, flush: None, resp, environ, datetime.now())


def _read_answer(
    client: socket.socket, skip: int = 0, body: bytes = BODY
) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data[skip:] or not data.endswith(body):
        chunk = client.recv(65536)
        assert chunk
        data += chunk
    head, rest = data[skip:].split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], dict(line.split(": ", 1) for line in lines[1:]), rest


def test_an_answer_is_written_whole_then_its_connection_handed_back(worker, connected):
    server, client = connected
    conn, later = _request(worker, server, client)
    worker._answer(conn, later, True, 200, HEADERS, BODY)
    status, fields, body = _read_answer(client)
    assert (status, fields["Connection"], body) == ("HTTP/1.1 200 OK", "keep-alive", BODY)
    assert worker.loop.finished == []  # handed back only when the batch's answers are flushed
    worker._flush_answered()
    worker.method_queue.run_callbacks(None)
    assert worker.loop.finished == [(conn, True)]


def test_a_client_asking_to_close_is_answered_and_its_connection_not_kept(worker, connected):
    server, client = connected
    conn, later = _request(worker, server, client, "Connection: close\r\n")
    worker._answer(conn, later, True, 503, [*HEADERS, ("Retry-After", "5")], BODY)
    status, fields, _ = _read_answer(client)
    assert (status, fields["Connection"], fields["Retry-After"]) == (
        "HTTP/1.1 503 Service Unavailable",
        "close",
        "5",
    )
    worker._flush_answered()
    worker.method_queue.run_callbacks(None)
    assert worker.loop.finished == [(conn, False)]


def test_a_full_send_buffer_is_left_to_a_pool_thread_not_waited_for(worker, connected):
    server, client = connected
    conn, later = _request(worker, server, client)
    # Fill what the socket takes: the client reads nothing yet. The kernel moves data on to
    # the client's buffer for a while, so fill again until a pause frees no more room.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.setblocking(False)
    filler, took = 0, -1
    while took != 0:
        took = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                took += server.send(b"x" * 4096)
        filler += took
        time.sleep(0.05)
    server.setblocking(True)  # as a request thread leaves it
    answering = threading.Thread(
        target=worker._answer, args=(conn, later, True, 200, HEADERS, BODY), daemon=True
    )
    answering.start()
    answering.join(10)
    # It returned with the answer still unwritten, and the connection not handed back.
    assert not answering.is_alive(), "the answering thread waited on the full socket"
    assert worker._answered == deque()
    status, _, body = _read_answer(client, skip=filler)  # the client reads: the rest goes out
    assert (status, body) == ("HTTP/1.1 200 OK", BODY)
    worker.tpool.shutdown(wait=True)
    worker.method_queue.run_callbacks(None)
    assert worker.loop.finished == [(conn, True)]


def test_a_connection_gone_before_its_answer_is_closed_not_kept(worker, connected):
    server, client = connected
    conn, later = _request(worker, server, client)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # with a reset
    with pytest.raises(ConnectionResetError):  # the reset has arrived
        server.recv(1, socket.MSG_PEEK)
    worker._answer(conn, later, True, 200, HEADERS, BODY)
    worker._flush_answered()
    worker.method_queue.run_callbacks(None)
    assert worker.loop.finished == [(conn, False)]


def _serving(worker, app) -> None:
    """Give the worker ``app`` as gunicorn would load it."""
    worker.app = SimpleNamespace(wsgi=lambda: app)
    worker.load_wsgi()


def _send_request(worker, server: socket.socket, client: socket.socket) -> TConn:
    client.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    return TConn(worker.cfg, server, client.getsockname(), server.getsockname())


def test_a_request_the_app_answers_later_is_left_to_whoever_answers_it(worker, connected):
    server, client = connected
    handed: list = []

    def app(environ, start_response):
        environ[ANSWER_LATER](lambda respond, flush: handed.append((respond, flush)))
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]

    _serving(worker, app)
    conn = _send_request(worker, server, client)
    assert worker.handle(conn) is _LATER
    client.setblocking(False)
    with pytest.raises(BlockingIOError):  # the placeholder was never written
        client.recv(100)
    client.setblocking(True)
    [(respond, flush)] = handed
    answering = threading.Thread(target=respond, args=(200, HEADERS, BODY))
    answering.start()
    answering.join(10)
    respond(503, HEADERS, BODY)  # a second answer is dropped
    flush()
    worker.method_queue.run_callbacks(None)
    status, _, body = _read_answer(client)
    assert (status, body) == ("HTTP/1.1 200 OK", BODY)
    assert worker.loop.finished == [(conn, True)]
    client.setblocking(False)
    with pytest.raises(BlockingIOError):
        client.recv(100)


def test_a_later_answer_whose_start_fails_is_a_500(worker, connected):
    server, client = connected

    def failing(respond, flush) -> None:
        raise RuntimeError("the committer is broken")

    def app(environ, start_response):
        environ[ANSWER_LATER](failing)
        start_response("202 Accepted", [("Content-Length", "0")])
        return [b""]

    _serving(worker, app)
    conn = _send_request(worker, server, client)
    assert worker.handle(conn) is _LATER
    worker.method_queue.run_callbacks(None)
    assert _read_answer(client, body=b"")[0] == "HTTP/1.1 500 Internal Server Error"
    assert worker.loop.finished == [(conn, True)]


def test_an_app_that_answers_at_once_is_served_as_gunicorn_serves_it(worker, connected):
    server, client = connected

    def app(environ, start_response):
        assert ANSWER_LATER in environ
        start_response("200 OK", HEADERS)
        return [BODY]

    _serving(worker, app)
    conn = _send_request(worker, server, client)
    assert worker.handle(conn) is True
    assert _read_answer(client)[2] == BODY


def test_nothing_reaches_the_loop_once_it_has_closed(worker):
    closed_fd = worker.method_queue._write_fd
    worker.method_queue.close()
    read_fd, write_fd = os.pipe()  # another file takes the closed descriptor's number
    try:
        assert write_fd == closed_fd
        worker._answered.append((object(), True))
        worker._flush_answered()  # must write nothing there
        os.set_blocking(read_fd, False)
        os.close(write_fd)
        assert os.read(read_fd, 10) == b""
    finally:
        os.close(read_fd)
