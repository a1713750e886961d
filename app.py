"""The plugNmeet webhook receiver: the app factory and the webhook route."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from werkzeug.middleware.proxy_fix import ProxyFix

import handlers
from config import ConfigError, Settings, load_settings
from plugnmeet_webhooks import cli, metrics
from plugnmeet_webhooks.normalize import NormalizationError, peek, to_str
from plugnmeet_webhooks.runtime import Runtime, current
from plugnmeet_webhooks.storage import engine as storage
from plugnmeet_webhooks.storage.commit import GroupCommitter
from plugnmeet_webhooks.storage.events import StoredEvent, now
from plugnmeet_webhooks.storage.migrate import SchemaBehind, prepare_schema
from plugnmeet_webhooks.text import plain, shown
from plugnmeet_webhooks.web import api, ops
from validation import VerificationError, body_digest, verify_delivery

log = logging.getLogger(__name__)

ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "application/webhook+json"})
MAX_KEY_LENGTH = 200


class BadEvent(ValueError):
    """A verified body that is not a JSON object with a string ``event``."""


def create_app(test_config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Create the receiver: settings from the environment (or ``test_config``), storage, route."""
    if isinstance(test_config, Settings):
        settings = test_config
    else:
        settings = load_settings({**os.environ, **(test_config or {})})
    configure_logging(settings)

    app = Flask(__name__)
    # One byte over the limit lets the route see that a chunked body was too long.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_count)  # type: ignore[method-assign]

    try:
        engine = storage.make_engine(settings.database_url, timeout=settings.db_timeout)
    except storage.UnsupportedDatabase as exc:
        raise ConfigError(str(exc)) from None
    try:
        prepare_schema(engine)
        schema_error = None
    except SchemaBehind as exc:
        # Keep the app up for 'flask db upgrade'; deliveries get 503 until it has run.
        log.error("%s", exc)
        schema_error = str(exc)
    # The writer may wait for a lock (db_timeout) before it fails; give it that and more.
    committer = GroupCommitter(engine, wait_seconds=2 * settings.db_timeout + 10)
    app.extensions["pnm"] = Runtime(settings, engine, committer, schema_error)

    app.add_url_rule(
        settings.webhook_path,
        "webhook",
        receive,
        methods=["POST"],
        provide_automatic_options=False,
    )
    app.json.sort_keys = False  # report fields keep their documented order
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    app.before_request(_start_timer)
    app.after_request(_count_delivery)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(VerificationError, unverified)
    app.register_error_handler(BadEvent, bad_event)
    app.register_error_handler(storage.StorageError, storage_unavailable)
    cli.init_app(app)
    return app


def _start_timer() -> None:
    if request.path == current().settings.webhook_path:
        g.pnm_started = time.perf_counter()


def _count_delivery(response: Response) -> Response:
    started = g.pop("pnm_started", None)
    if started is not None:
        metrics.LATENCY.observe(time.perf_counter() - started)
        outcome = g.pop("pnm_outcome", str(response.status_code))
        metrics.DELIVERIES.labels(outcome, g.pop("pnm_reason", "")).inc()
    return response


def _reply(status: int, word: str, **headers: str) -> Response:
    g.pnm_outcome = word
    response = Response(_body(word), status=status, mimetype="application/json")
    response.headers.update(headers)
    return response


@functools.cache
def _body(word: str) -> bytes:
    # The answers are few and fixed: each one's bytes are made once.
    return json.dumps({"status": word}).encode()


def _reject(status: int, word: str, reason: str, **headers: str) -> Response:
    log.warning("rejected delivery from %s: %s (%d)", request.remote_addr, reason, status)
    return _reply(status, word, **headers)


def http_error(exc: HTTPException) -> Response:
    """Answer Werkzeug's errors (404, 405, 413, 415, ...) as small JSON bodies."""
    code = exc.code or 500
    word = (exc.name or "error").lower().replace(" ", "_")
    if code in (400, 413, 415):
        return _reject(code, word, exc.description or word)
    response = _reply(code, word)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def unverified(exc: VerificationError) -> Response:
    """Answer a delivery that failed verification: 401 without a token, 403 otherwise."""
    g.pnm_reason = exc.kind
    if exc.missing_token:
        return _reject(401, "unauthorized", exc.reason, **{"WWW-Authenticate": "Bearer"})
    return _reject(403, "forbidden", exc.reason)


def bad_event(exc: BadEvent) -> Response:
    """Answer a verified body that is not an event."""
    return _reject(400, "bad_request", str(exc))


def storage_unavailable(exc: storage.StorageError) -> Response:
    """Answer 503 when the database cannot take the write, so the sender retries."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).splitlines()[0][:200] if str(cause) else ""
    log.error("database unavailable, answered 503 for a retry: %s: %s", type(cause).__name__, text)
    return _reply(503, "unavailable", **{"Retry-After": "5"})


def parse_event(body: bytes) -> dict[str, Any]:
    """Parse a verified body as a JSON object carrying a string ``event``."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadEvent("body is not UTF-8") from None
    except RecursionError:
        raise BadEvent("body is nested too deeply") from None
    except ValueError:
        raise BadEvent("body is not JSON") from None
    if not isinstance(payload, dict):
        raise BadEvent(f"body is a JSON {type(payload).__name__}, not an object")
    name = payload.get("event")
    if not isinstance(name, str) or not name.strip():
        raise BadEvent("body has no string 'event'")
    if not _plausible_key(name):
        raise BadEvent("'event' is not a plausible event name")
    event_id = payload.get("id")
    if event_id is not None and not _plausible_key(event_id):
        raise BadEvent("'id' is not a printable string of at most 200 characters")
    return payload


def _plausible_key(value: object) -> bool:
    """Tell whether a value can name or identify an event: printable, storable, short."""
    if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH or not value.isprintable():
        return False
    try:
        to_str(value, "key")  # the same rule as every other text field: UTF-8, no NUL
    except NormalizationError:
        return False
    return True


def receive() -> Response:
    """Verify a delivery, store it, run its handler, acknowledge it."""
    rt = current()
    try:
        body = request.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:  # the server could not read the body (bad chunk sizes, ...)
        raise BadRequest(f"unreadable body: {type(exc).__name__}") from None
    if len(body) > rt.settings.max_body_bytes:
        raise RequestEntityTooLarge(f"body over {rt.settings.max_body_bytes} bytes")
    if request.mimetype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(f"content type {shown(request.mimetype, 60)}")
    digest = body_digest(body)
    claims = verify_delivery(
        body,
        request.headers.get("Authorization"),
        request.headers.get("Hash-Token"),
        rt.settings.api_keys,
        leeway=rt.settings.clock_leeway,
        digest=digest,
    )
    payload = parse_event(body)
    if rt.schema_error:
        log.error("delivery of %s answered 503: %s", payload["event"], rt.schema_error)
        return _reply(503, "unavailable", **{"Retry-After": "30"})

    room_id, room_sid, created_at = peek(payload)
    event_id = payload.get("id") or None
    stored = StoredEvent(
        dedupe_key=event_id or f"sha256:{digest.hex()}",
        event_id=event_id,
        event=payload["event"],
        room_id=room_id,
        room_sid=room_sid,
        created_at=created_at,
        received_at=now(),
        api_key=claims["iss"],
        remote_addr=request.remote_addr,
        body_sha256=digest.hex(),
        body=body,
    )

    def handle(conn: Any) -> None:
        handlers.handle_payload(conn, payload, stored.dedupe_key, stored.received_at)

    outcome = rt.committer.submit(stored, handle)
    if outcome == "duplicate":
        log.info(
            "Duplicate %s event %s acknowledged; nothing changed.",
            shown(stored.event),
            plain(stored.dedupe_key),
        )
        return _reply(200, "duplicate")
    label = metrics.event_label(stored.event, handlers.handled_events())
    metrics.EVENTS.labels(label).inc()
    if outcome == "handler_failed":
        metrics.HANDLER_FAILURES.labels(label).inc()
    return _reply(200, "accepted")


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(name)s] %(message)s")


_HANDLER_MARK = "_pnm_handler"


def configure_logging(settings: Settings) -> None:
    """Send log lines to stderr, as text or as one JSON object per line."""
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter: logging.Formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = _TextFormatter()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Alembic narrates every schema check at INFO; 'flask db upgrade' reports what it did.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
