"""Test helpers: keys, the corpus and samples, signed deliveries, what was stored."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import count_events, list_events
from plugnmeet_webhooks.storage.events import events as events_table
from validation import sign

ROOT = Path(__file__).resolve().parents[2]
KEY = "plugnmeet"
SECRET = "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBnhM9kW"
OTHER_KEY = "plugnmeet-b"
OTHER_SECRET = "Qm3vX9rT2pLw8sYc4nHb7dKf1gJz6aUe0iOy"
CORPUS_DIR = ROOT / "tests" / "corpus"
SAMPLES_DIR = ROOT / "samples"
CORPUS = sorted(CORPUS_DIR.glob("*.json"))
SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
PATH = "/webhook-listener"


@dataclass
class Delivery:
    """The answer to one delivery."""

    status: int
    json: dict[str, Any] | None


def deliver(
    client: Any,
    body: bytes,
    *,
    token: str | None = None,
    key: str = KEY,
    secret: str = SECRET,
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
    path: str = PATH,
) -> Delivery:
    """POST ``body`` signed as a plugNmeet server signs it (or with the given token/headers)."""
    if headers is None:
        token = sign(body, key, secret) if token is None else token
        headers = {"Authorization": token, "Hash-Token": token}
    response = client.post(path, data=body, headers=headers, content_type=content_type)
    return Delivery(response.status_code, response.get_json(silent=True))


def stored_count(app: Any) -> int:
    """Return how many events the app has stored."""
    return count_events(runtime.of(app).database())


def stored_rows(app: Any) -> list[dict[str, Any]]:
    """Return every stored event row (without bodies), newest first."""
    return list_events(runtime.of(app).database(), limit=10_000)


def stored_body(app: Any, event_id: str) -> bytes:
    """Return the raw body stored for an event id."""
    from sqlalchemy import select

    with runtime.of(app).database().connect() as conn:
        query = select(events_table.c.body).where(events_table.c.event_id == event_id)
        return conn.execute(query).scalar_one()


def stored_text(app: Any) -> str:
    """Every value of the stored events and participant rows, as one text to search."""
    from sqlalchemy import text

    with runtime.of(app).database().connect() as conn:
        return " ".join(
            str(value)
            for query in ("SELECT * FROM events", "SELECT * FROM participants")
            for row in conn.execute(text(query))
            for value in row
        )


def corpus_bodies() -> list[bytes]:
    """Return the corpus deliveries, in the order sent, as the exact bytes."""
    return [path.read_bytes() for path in CORPUS]


def corpus_path(name: str, nth: int = 1) -> Path:
    """Return the corpus file of the ``nth`` delivery called ``name``: its file name without
    the number, ``corpus_path("participant_joined", 2)`` for the second join.

    An unknown name, or an ``nth`` past the last, is a KeyError naming what there is.
    """
    paths = [path for path in CORPUS if path.stem.split("_", 1)[1] == name]
    if not paths:
        known = ", ".join(dict.fromkeys(path.stem.split("_", 1)[1] for path in CORPUS))
        raise KeyError(f"no corpus delivery called {name!r}; the corpus has: {known}")
    if not 1 <= nth <= len(paths):
        raise KeyError(f"the corpus has {len(paths)} {name!r} deliveries, not a number {nth}")
    return paths[nth - 1]


def corpus(name: str, nth: int = 1) -> bytes:
    """Return the exact bytes of the ``nth`` corpus delivery called ``name``."""
    return corpus_path(name, nth).read_bytes()


def corpus_json(name: str, nth: int = 1) -> dict[str, Any]:
    """Return the ``nth`` corpus delivery called ``name``, parsed."""
    return json.loads(corpus(name, nth))


def changed_body(payload: dict[str, Any], **changes: Any) -> bytes:
    """Return ``payload`` with changes at '__'-separated paths (``room__room_id="r"``), as bytes."""
    copy = json.loads(json.dumps(payload))
    for path, value in changes.items():
        target = copy
        *parents, leaf = path.split("__")
        for name in parents:
            target = target[name]
        target[leaf] = value
    return json.dumps(copy).encode()


def failed_with(app: Any, reason: str) -> dict[str, Any]:
    """Return the one stored event whose handler failed, checking its error names ``reason``."""
    [row] = [r for r in stored_rows(app) if r["handler_status"] == "failed"]
    assert reason in row["handler_error"], row["handler_error"]
    return row


def metric(client: Any, line_start: str, token: str | None = None) -> float:
    """Return the value of the /metrics line that starts with ``line_start`` (0 if none)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    page = client.get("/metrics", headers=headers).get_data(as_text=True)
    for line in page.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def artifact_type(body: bytes) -> str | None:
    """Return the artifact type name a body carries, or None for other events."""
    payload = json.loads(body)
    artifact = payload.get("room_artifact") or payload.get("roomArtifact")
    return None if artifact is None else artifact.get("type", "UNKNOWN_ARTIFACT")


def handler_messages(caplog: Any) -> list[str]:
    """Return what the handlers logged at INFO and above."""
    import handlers
    from plugnmeet_webhooks import handler_registry

    names = {handlers.log.name, handler_registry.log.name}
    return [r.getMessage() for r in caplog.records if r.name in names and r.levelno >= 20]


def b64url(data: bytes) -> str:
    """Encode as JWS does: URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: dict | bytes, claims: dict | bytes, secret: str = SECRET) -> str:
    """Build a JWS by hand with any header and claims, HMAC-SHA256-signed with ``secret``."""
    import hashlib
    import hmac

    def encode(part: dict | bytes) -> str:
        return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())

    signing_input = f"{encode(header)}.{encode(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def good_claims(body: bytes, **overrides: Any) -> dict[str, Any]:
    """Return the claims a plugNmeet server puts in a token for ``body``, with overrides."""
    import base64
    import hashlib
    import time

    now = int(time.time())
    claims = {
        "iss": KEY,
        "nbf": now,
        "exp": now + 300,
        "sub": "",
        "sha256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not DROP}


DROP = object()
"""Pass as a claim override to leave the claim out."""


def run_flask(*args: str, env: dict[str, str] | None = None, database: Path | None = None):
    """Run ``flask --app app ARGS`` in a fresh process, as a user would, and capture it."""
    environment = {"PATH": "/usr/bin:/bin", "PNM_API_KEY": KEY, "PNM_API_SECRET": SECRET}
    if database is not None:
        environment["PNM_DATABASE_URL"] = f"sqlite:///{database}"
    if env is not None:
        environment = env
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_rejection_logged(caplog: Any, status: int, *secrets: str) -> None:
    """Check the one WARNING line a rejection leaves: remote address, status, no secrets."""
    import app as receiver

    records = [r for r in caplog.records if r.name == receiver.log.name and r.levelno >= 30]
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert records[0].levelname == "WARNING"
    assert message.startswith("rejected delivery from 127.0.0.1: ")
    assert message.endswith(f"({status})")
    for secret in (SECRET, *secrets):
        if len(secret) > 20:
            assert secret not in caplog.text and secret[-20:] not in caplog.text


def ledger_snapshot(app: Any) -> dict[str, list[tuple]]:
    """Return every ledger row, table by table, in key order (what 'the ledger' is)."""
    from plugnmeet_webhooks.ledger import writes as ledger

    snapshot = {}
    with runtime.of(app).database().connect() as conn:
        for table in ledger.LEDGER_TABLES:
            keys = [c for c in table.primary_key.columns]
            snapshot[table.name] = [tuple(r) for r in conn.execute(table.select().order_by(*keys))]
    return snapshot


def reset_database(app: Any) -> None:
    """Delete every stored event and ledger row (between hypothesis examples)."""
    from plugnmeet_webhooks.ledger import writes as ledger

    with write_transaction(runtime.of(app).database()) as conn:
        ledger.clear(conn)
        conn.execute(events_table.delete())


def report(app: Any, name: str, **filters: Any) -> dict[str, Any]:
    """Build a report straight from the app's database, in its JSON form (as the API and
    ``report --format json`` give it)."""
    from plugnmeet_webhooks.ledger import periods, reports

    with runtime.of(app).database().connect() as conn:
        return reports.build(conn, name, periods.Filters(**filters)).as_dict()


@contextmanager
def handler_replaced(app: Any, name: str, handler: Any) -> Iterator[None]:
    """Let ``handler`` handle ``name`` on this app's own registry, then put the old one back."""
    registry = runtime.of(app).registry
    original = registry.handler(name)
    registry.on(name, replace=True)(handler)
    try:
        yield
    finally:
        if original is not None:
            registry.on(name, replace=True)(original)
