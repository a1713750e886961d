"""Local stand-ins for the billing systems usage is sent to: Stripe's meter events API and a
CloudEvents ingest endpoint (OpenMeter's). Each checks every request's shape as the vendor
documents it and answers 400 with the reason when it is wrong; a test can script other
answers (a 503, say) and read what arrived."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

STRIPE_KEY = "sk_test_51Tst0nly0aBcDeFgHiJkLmNoPqRsTuV"
METER_TOKEN = "om_test_token_0123456789abcdef"
MAX_AGE = 35 * 86400  # Stripe takes meter events of the past 35 days
MAX_AHEAD = 300  # and up to 5 minutes ahead


@dataclass
class Arrived:
    """One request as it arrived, and how it was answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    problem: str | None


class _Server:
    """A threaded local HTTP server that checks each POST with ``problem`` and answers."""

    def __init__(self) -> None:
        self.arrived: list[Arrived] = []
        self.script: deque[int] = deque()  # statuses to answer first, whatever arrives
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer, problem = server._answer(self.path, headers, body)
                with server._lock:
                    server.arrived.append(Arrived(self.path, headers, body, status, problem))
                self.send_response(status)
                if status == 204:  # No Content: no body, no length
                    self.end_headers()
                    return
                data = json.dumps(answer).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, str | None]:
        problem = self.problem(path, headers, body)
        if problem is not None:
            return 400, {"error": {"message": problem}}, problem
        with self._lock:
            scripted = self.script.popleft() if self.script else None
        if scripted is not None:
            return scripted, {"error": {"message": f"scripted {scripted}"}}, None
        return self.accepted(headers, body)

    def problem(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        raise NotImplementedError

    def accepted(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, str | None]:
        raise NotImplementedError

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Arrived]:
        """Wait until ``count`` requests arrived; return them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.arrived) >= count:
                    return list(self.arrived)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.arrived)} requests arrived, not {count}")


class StripeMeter(_Server):
    """``POST /v1/billing/meter_events`` as Stripe documents it: form-encoded ``event_name``,
    ``payload[stripe_customer_id]``, ``payload[value]``, ``timestamp`` (unix seconds, the
    past 35 days to 5 minutes ahead) and ``identifier`` (at most 100 characters, unique), a
    secret key as Bearer. A repeated ``Idempotency-Key`` gets the first answer again;
    a repeated ``identifier`` under a new key is refused."""

    def __init__(self, event_name: str = "plugnmeet_minutes") -> None:
        super().__init__()
        self.event_name = event_name
        self.events: list[dict[str, str]] = []  # the meter events Stripe counted
        self._by_key: dict[str, tuple[int, Any, str | None]] = {}

    def problem(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        if path != "/v1/billing/meter_events":
            return f"unknown path {path}"
        if headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return "invalid API key"
        if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return "the body must be form-encoded"
        try:
            form = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            return "the body is not a form"
        expected = {
            "event_name",
            "payload[stripe_customer_id]",
            "payload[value]",
            "timestamp",
            "identifier",
        }
        if set(form) != expected or any(len(v) != 1 for v in form.values()):
            return f"the fields are {sorted(form)}, not {sorted(expected)}"
        fields = {k: v[0] for k, v in form.items()}
        if fields["event_name"] != self.event_name:
            return f"no meter has event_name {fields['event_name']!r}"
        if not re.fullmatch(r"cus_[A-Za-z0-9]+", fields["payload[stripe_customer_id]"]):
            return "payload[stripe_customer_id] is not a customer id"
        if not re.fullmatch(r"\d+(\.\d+)?", fields["payload[value]"]):
            return "payload[value] must be a non-negative number"
        if not fields["timestamp"].isdigit():
            return "timestamp must be unix seconds"
        age = time.time() - int(fields["timestamp"])
        if not -MAX_AHEAD <= age <= MAX_AGE:
            return "timestamp must be within the past 35 days or up to 5 minutes ahead"
        if not 0 < len(fields["identifier"]) <= 100:
            return "identifier must be 1 to 100 characters"
        return None

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, str | None]:
        key = headers.get("idempotency-key")
        if key and key in self._by_key:
            return self._by_key[key]
        answer = super()._answer(path, headers, body)
        if key and answer[0] < 500:  # Stripe keeps the answers that were not server errors
            self._by_key[key] = answer
        return answer

    def accepted(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, str | None]:
        fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        if any(e["identifier"] == fields["identifier"] for e in self.events):
            problem = f"an event with identifier {fields['identifier']} exists already"
            return 400, {"error": {"message": problem}}, problem
        self.events.append(fields)
        return 200, {"object": "billing.meter_event", **fields}, None


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


class CloudEventsIngest(_Server):
    """A CloudEvents 1.0 ingest endpoint in structured JSON mode, as OpenMeter takes it:
    ``application/cloudevents+json``, ``specversion`` 1.0, non-empty ``id``, ``source``,
    ``type`` and ``subject``, an RFC 3339 ``time``, and ``data`` an object; a Bearer token.
    Answers 204, as OpenMeter does."""

    def __init__(self, path: str = "/api/v1/events", token: str | None = METER_TOKEN) -> None:
        super().__init__()
        self.path = path
        self.token = token
        self.events: list[dict[str, Any]] = []

    def problem(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        if path != self.path:
            return f"unknown path {path}"
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return "invalid token"
        if headers.get("content-type", "").split(";")[0] != "application/cloudevents+json":
            return "the content type must be application/cloudevents+json"
        try:
            event = json.loads(body)
        except ValueError:
            return "the body is not JSON"
        if not isinstance(event, dict) or event.get("specversion") != "1.0":
            return "specversion must be 1.0"
        for name in ("id", "source", "type", "subject"):
            if not isinstance(event.get(name), str) or not event[name]:
                return f"{name} must be a non-empty string"
        if not isinstance(event.get("time"), str) or not _RFC3339.fullmatch(event["time"]):
            return "time must be RFC 3339"
        datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if not isinstance(event.get("data"), dict):
            return "data must be an object"
        if event.get("datacontenttype", "application/json") != "application/json":
            return "datacontenttype must be application/json"
        unknown = set(event) - {
            "specversion", "id", "source", "type", "subject", "time", "data", "datacontenttype",
        }  # fmt: skip
        if unknown:
            return f"unknown attributes {sorted(unknown)}"
        return None

    def accepted(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, str | None]:
        event = json.loads(body)
        if any(e["id"] == event["id"] and e["source"] == event["source"] for e in self.events):
            return 204, None, None  # a repeat: counted once (CloudEvents ids are unique per source)
        self.events.append(event)
        return 204, None, None
