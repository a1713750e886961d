"""A local HTTP server standing for Slack or a billing app: it records what arrives and
answers as a test tells it to (a status, a Retry-After, a delay)."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    """How to answer one request."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Sink:
    """Record POSTs to any path; answer from a script per path, then with the default.

    It keeps connections alive (HTTP/1.1) and counts the connections it was opened."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.connections = 0
        self._scripts: dict[str, deque[Answer]] = {}
        self._default: dict[str, Answer] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: every answer has its Content-Length
            # The answer's head and body go in two writes: with Nagle's algorithm the body
            # would wait for the client's delayed ACK (40 ms) on a kept-alive connection.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with sink._lock:
                    sink.connections += 1

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = sink._answer(self.path)
                if answer.delay:
                    time.sleep(answer.delay)
                with sink._lock:
                    sink.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.time(),
                        )
                    )
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *answers: Answer, then: Answer | None = None) -> None:
        """Answer the next requests to ``path`` in this order, then with ``then``."""
        with self._lock:
            self._scripts[path] = deque(answers)
            if then is not None:
                self._default[path] = then

    def _answer(self, path: str) -> Answer:
        with self._lock:
            queued = self._scripts.get(path)
            if queued:
                return queued.popleft()
            return self._default.get(path, Answer())

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until ``count`` requests reached ``path``; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.at(path)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{path} got {len(self.at(path))} requests, not {count}")
