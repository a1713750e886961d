"""The worker's answer given later, on real sockets: a full send buffer does not hold up the
thread that answers, and the connection goes back to the worker's loop only once answered."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.http import wsgi
from gunicorn.workers.gthread import PollableMethodQueue, TConn

from plugnmeet_webhooks.serving import DrainingWorker, _AnsweredLater

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
    made.method_queue = PollableMethodQueue()
    made.method_queue.init()
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
    return conn, _AnsweredLater(lambda respond, flush: None, resp, environ)


def _read_answer(client: socket.socket, skip: int = 0) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data[skip:] or not data.endswith(BODY):
        chunk = client.recv(65536)
        assert chunk
        data += chunk
    head, body = data[skip:].split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], dict(line.split(": ", 1) for line in lines[1:]), body


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
