"""The gunicorn worker: gunicorn's threaded worker, except that a stopping worker first
takes in the connections already waiting on the listening socket, and that a request can be
answered later by another thread.

A connection that has completed its handshake waits in the kernel's queue until a worker
accepts it. gunicorn's own worker stops accepting on ``SIGTERM`` and closes the socket when
it exits, and when the last holder of a socket closes it the kernel resets every
connection still queued there: deliveries that plugNmeet had already sent. This worker
accepts everything queued at that moment, then closes its copy of the socket at once (a
later connection is refused, or waits for the next process if systemd holds the socket),
and answers what it took in as it answers any delivery: 200 once stored, else 503.

It also lets the app answer a request later, from another thread, without a thread waiting
for it. A delivery is answered only once the batch that stores it has committed; a request
thread that slept until then would cost two or three trips through the scheduler for every
delivery. Instead the app calls ``environ[ANSWER_LATER](start)`` and returns; once this
request thread is done with the connection it calls ``start(respond, flush)``, and whoever
calls ``respond(status, headers, body)`` (the thread that committed the batch) writes the
answer; ``flush()``, called once after a batch's answers, hands their connections back to the
worker's loop for their next requests, waking the loop once for the batch. Only plain
HTTP/1.x connections offer it (not TLS, not HTTP/2); elsewhere ``ANSWER_LATER`` is absent
and the app answers as any WSGI app does.

gunicorn loads the worker class in its master, so this module must import nothing of the
project: a change to it takes a restart, not a reload.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from http import HTTPStatus
from typing import Any

from gunicorn.http.wsgi import Response as GunicornResponse
from gunicorn.workers.gthread import (
    DEFAULT_WORKER_DATA_TIMEOUT,
    PollableMethodQueue,
    TConn,
    ThreadWorker,
)

ANSWER_LATER = "pnm.answer_later"
"""The environ key of the callable through which the app answers a request later."""

Respond = Callable[[int, list[tuple[str, str]], bytes], None]
"""Write a request's answer: its status code, headers and whole body (called once)."""

Start = Callable[[Respond, Callable[[], None]], None]
"""What the app hands to ``environ[ANSWER_LATER]``: called with ``respond`` and ``flush`` once
the request thread is done with the connection."""

_LATER = object()  # what ``handle`` returns for a connection that is answered later

REST_WRITE_SECONDS = 30.0
"""How long a pool thread waits for a client to take the rest of an answer its socket could
not take at once; then the connection is closed."""


class _AnsweredLater(BaseException):
    """Raised through gunicorn's request handling (which catches ``Exception``) once the app
    has asked to answer later, so that nothing is written for the request now."""

    def __init__(
        self, start: Start, resp: GunicornResponse, environ: dict[str, Any], began: datetime
    ) -> None:
        super().__init__()
        self.start = start
        self.resp = resp
        self.environ = environ
        self.began = began


class _ClosingQueue(PollableMethodQueue):
    """gunicorn's queue of calls for the worker's loop, refusing calls once closed: an answer
    given after the loop has ended (a batch that outlived the graceful timeout) must not
    write to the pipe's file descriptor, which by then may be another file's."""

    def init(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        super().init()

    def defer(self, callback: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if not self._closed:
                super().defer(callback, *args)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            super().close()


class _Finished:
    """A request's end as gunicorn's loop reads it from a future: keep the connection, or
    the error that ended the request thread."""

    def __init__(self, keep: bool, error: BaseException | None = None) -> None:
        self._keep = keep
        self._error = error

    def cancelled(self) -> bool:
        return False

    def result(self) -> bool:
        if self._error is not None:
            raise self._error
        return self._keep


class DrainingWorker(ThreadWorker):
    """``gthread``, with the listening socket's queue taken in before the worker stops, and
    requests that the app answers later (:data:`ANSWER_LATER`)."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        app: Any = self.wsgi  # type: ignore[has-type]  # untyped in gunicorn
        plain_http = not self.cfg.is_ssl

        def offering_later(environ: dict[str, Any], start_response: Any) -> Any:
            resp = getattr(start_response, "__self__", None)
            if not plain_http or type(resp) is not GunicornResponse:
                return app(environ, start_response)
            began = datetime.now()
            started: list[Start] = []
            environ[ANSWER_LATER] = started.append

            def starting(status: str, headers: Any, exc_info: Any = None) -> Any:
                if started:  # the app's placeholder answer: never sent
                    return _ignore
                return start_response(status, headers, exc_info)

            body = app(environ, starting)
            if not started:
                return body
            if hasattr(body, "close"):
                body.close()
            raise _AnsweredLater(started[0], resp, environ, began)

        offering_later.__wrapped__ = app  # type: ignore[attr-defined]  # inspect.unwrap finds the app
        self.wsgi = offering_later

    def init_process(self) -> None:
        self._answered: deque[tuple[TConn, bool]] = deque()  # written, not yet handed back
        self._hand_back_due = False
        self.method_queue = _ClosingQueue()
        super().init_process()

    def enqueue_req(self, conn: TConn) -> None:
        # gunicorn's loop hears of every request's end from its future; a request answered
        # later must not wake the loop then (its answer hands the connection back), so the
        # request thread tells the loop itself, and only when the request is done.
        self.tpool.submit(self._serve, conn)

    def _serve(self, conn: TConn) -> None:
        try:
            keep = self.handle(conn)
        except BaseException as exc:
            self.method_queue.defer(self.finish_request, conn, _Finished(False, exc))
            raise
        if keep is not _LATER:
            self.method_queue.defer(self.finish_request, conn, _Finished(keep))

    def handle(self, conn: TConn) -> Any:
        try:
            return super().handle(conn)
        except _AnsweredLater as later:
            self._start_later(conn, later)  # from here on, the answer owns the connection
            return _LATER

    def _start_later(self, conn: TConn, later: _AnsweredLater) -> None:
        """Leave the connection to whoever answers the request (this thread is done with
        it), then let the app start the work that ends in that answer."""
        # As gunicorn does before keeping a connection: any unread body is drained first.
        drained = bool(
            conn.parser.finish_body(deadline=time.monotonic() + DEFAULT_WORKER_DATA_TIMEOUT)
        )
        answered = threading.Lock()

        def respond(status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            if not answered.acquire(blocking=False):
                return  # answered already
            self._answer(conn, later, drained, status, headers, body)

        try:
            later.start(respond, self._flush_answered)
        except BaseException:  # whatever it was, the connection gets an answer
            self.log.exception("a request to be answered later failed")
            respond(500, [("Content-Length", "0")], b"")  # unless answered already
            self._flush_answered()

    def _answer(
        self,
        conn: TConn,
        later: _AnsweredLater,
        drained: bool,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Write an answer without waiting (a pool thread writes what the socket's buffer
        cannot take now); the connection is handed back at the next flush."""
        resp = later.resp
        keep = False
        try:
            if not any(name.lower() == "content-length" for name, _ in headers):
                headers = [*headers, ("Content-Length", str(len(body)))]  # never chunked
            if not drained:
                resp.force_close()  # the rest of its body is unread: the connection ends
            resp.start_response(f"{status} {HTTPStatus(status).phrase}", headers)
            lines = resp.default_headers()
            lines.extend(f"{name}: {value}\r\n" for name, value in resp.headers)
            data = "".join(lines).encode("latin-1") + b"\r\n" + body
            resp.headers_sent = True
            resp.sent = len(body)
            keep = drained and not resp.should_close()
            sent = _send_now(conn.sock, data)
            if sent < len(data):
                self.tpool.submit(self._write_rest, conn, later, data[sent:], keep)
                return
        except OSError as exc:
            keep = False
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error answering a request.")
        except Exception:
            keep = False
            self.log.exception("Error answering a request.")
        self._end(conn, later, keep)

    def _write_rest(self, conn: TConn, later: _AnsweredLater, rest: bytes, keep: bool) -> None:
        try:
            conn.sock.settimeout(REST_WRITE_SECONDS)
            conn.sock.sendall(rest)
            conn.sock.settimeout(None)
        except OSError:  # a timeout among them: the client stopped reading
            keep = False
        self._end(conn, later, keep)
        self._flush_answered()

    def _end(self, conn: TConn, later: _AnsweredLater, keep: bool) -> None:
        try:
            resp = later.resp
            self.log.access(resp, resp.req, later.environ, datetime.now() - later.began)
        finally:
            self._answered.append((conn, keep))

    def _flush_answered(self) -> None:
        """Wake the worker's loop once to take back every connection answered so far."""
        if self._answered and not self._hand_back_due:
            self._hand_back_due = True
            self.method_queue.defer(self._hand_back)

    def _hand_back(self) -> None:
        """On the worker's loop: keep or close each answered connection, as gunicorn does."""
        self._hand_back_due = False
        while self._answered:
            conn, keep = self._answered.popleft()
            self.finish_request(conn, _Finished(keep))

    def set_accept_enabled(self, enabled: bool) -> None:
        stopping = not enabled and not self.alive
        if stopping:
            for listener in self.sockets:
                self._take_queued(listener)
        super().set_accept_enabled(enabled)
        if stopping:
            for listener in self.sockets:
                listener.close()

    def _take_queued(self, listener: Any) -> None:
        """Accept every connection queued on ``listener`` now, and hand each to a thread."""
        listener.setblocking(False)
        # The queue holds at most the listen backlog; new arrivals cannot keep this going.
        for _ in range(self.cfg.backlog + 64):
            try:
                client, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError:
                return  # the socket is already closed: nothing is queued on this copy
            client.setblocking(True)
            self.nr_conns += 1
            self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))


def _ignore(data: bytes) -> None:
    """The ``write`` of a placeholder answer: nothing is sent."""


def _send_now(sock: socket.socket, data: bytes) -> int:
    """Send what the socket's buffer takes now, without waiting; the count sent."""
    try:
        return sock.send(data, socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return 0
