"""Local stand-ins for Slack's and Mattermost's incoming webhooks.

Each refuses what the real service documents it refuses: Slack a Block Kit message over its
limits (a section's text of 1 to 3,000 characters, at most 10 fields of at most 2,000, at
most 50 blocks) with a 400, and more than one message a second with a 429 and
``Retry-After``. Mattermost reads only ``text`` (it ignores blocks). Each records what it took
and what it refused.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECTION_TEXT = 3000
FIELD_TEXT = 2000
MAX_FIELDS = 10
MAX_BLOCKS = 50


@dataclass
class Taken:
    """A message the service took, and when."""

    payload: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        return self.payload["text"]


def slack_problem(payload: Any) -> str | None:
    """Say why Slack would refuse this message (its documented limits), or None."""
    if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
        return "invalid_payload"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        return "invalid_blocks"
    for block in blocks:
        if block.get("type") != "section":
            return "invalid_blocks"
        text = (block.get("text") or {}).get("text")
        fields = block.get("fields") or []
        if text is None and not fields:
            return "invalid_blocks"
        if text is not None and not 1 <= len(text) <= SECTION_TEXT:
            return "invalid_blocks"
        if len(fields) > MAX_FIELDS or any(
            not 1 <= len(field.get("text", "")) <= FIELD_TEXT for field in fields
        ):
            return "invalid_blocks"
    return None


class ChatServer:
    """A chat service's incoming webhook on a local port: ``flavor`` is slack or mattermost."""

    def __init__(
        self,
        flavor: str = "slack",
        *,
        interval: float | None = 1.0,
        retry_after: str | None = "1",
    ) -> None:
        self.flavor = flavor
        self.interval = interval  # at most one message per this many seconds (None: no limit)
        self.retry_after = retry_after
        self.taken: list[Taken] = []
        self.refused: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer, headers = server._answer(body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0/B0/secret-path"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        with self._lock:
            now = time.monotonic()
            last = self.taken[-1].at if self.taken else None
            if self.interval is not None and last is not None and now - last < self.interval:
                self.refused.append((429, "rate_limited"))
                headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
                return 429, b"rate_limited", headers
            if self.flavor == "slack":
                problem = slack_problem(payload)
            else:
                text = payload.get("text") if isinstance(payload, dict) else None
                problem = None if isinstance(text, str) and text else "missing text"
            if problem is not None:
                self.refused.append((400, problem))
                return 400, problem.encode(), {}
            self.taken.append(Taken(payload, now))
            return 200, b"ok", {}

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Taken]:
        """Wait until ``count`` messages were taken; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.taken) >= count:
                    return list(self.taken)
            time.sleep(0.05)
        raise AssertionError(
            f"took {len(self.taken)} messages, not {count}; refused {self.refused}"
        )
