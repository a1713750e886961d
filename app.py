"""The plugNmeet webhook receiver: the app factory and the webhook route.

A delivery goes: :func:`receive` reads the body, checks its size and type, verifies its
token (``validation``), parses the event, and hands a
:class:`~plugnmeet_webhooks.storage.batch.Delivery` to the runtime's group committer, which
inserts the event with others waiting and applies it to the ledger in one transaction
(``plugnmeet_webhooks.ingest``: normalise, run the handler from ``handlers``, run its
writes), commits, and only then is the delivery answered 200.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    MethodNotAllowed,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

import handlers
from config import ConfigError, Settings, load_settings
from plugnmeet_webhooks import cli, runtime
from plugnmeet_webhooks.billing.billing_file import load_billing
from plugnmeet_webhooks.billing.documents import load_template
from plugnmeet_webhooks.metrics import event_label
from plugnmeet_webhooks.normalize import NormalizationError, peek, to_str
from plugnmeet_webhooks.runtime import Runtime, current
from plugnmeet_webhooks.serving import ANSWER_LATER, Respond
from plugnmeet_webhooks.storage.batch import Delivery, Outcome, Result
from plugnmeet_webhooks.storage.committer import CommitterStopped, Flush
from plugnmeet_webhooks.storage.errors import Fault, classify, describe
from plugnmeet_webhooks.storage.events import HandlerStatus, StoredEvent, now
from plugnmeet_webhooks.text import plain, shown
from plugnmeet_webhooks.web import api, auth, dashboard, ops
from plugnmeet_webhooks.web.proxy import behind_proxies
from plugnmeet_webhooks.workflows import kinds
from plugnmeet_webhooks.workflows.rules import customers_needed
from plugnmeet_webhooks.workflows.rules_file import load_rules
from validation import VerificationError, body_digest

log = logging.getLogger(__name__)

ACCEPTED_CONTENT_TYPES = frozenset({"application/json", "application/webhook+json"})
MAX_KEY_LENGTH = 200


class BadEvent(ValueError):
    """A verified body that is not a JSON object with a string ``event``."""


def create_app(test_config: Settings | Mapping[str, str] | None = None) -> Flask:
    """Wire the receiver: settings from the environment (or ``test_config``), routes, commands.

    Nothing is opened here: the database is reached when a delivery or a command needs it.
    """
    if isinstance(test_config, Settings):
        settings = test_config
    else:
        settings = load_settings({**os.environ, **(test_config or {})})

    app = Flask(__name__)
    # One byte over the limit lets the route see that a chunked body was too long.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    if settings.proxy_count:
        app.wsgi_app = behind_proxies(app.wsgi_app, settings.proxy_count)  # type: ignore[method-assign,assignment]
    destination_kinds = kinds.registry.copy()
    rules = load_rules(settings.rules_file, kinds=destination_kinds)
    billing = load_billing(settings.billing_file)
    if billing is None and (problem := customers_needed(rules)):
        raise ConfigError(problem)
    # A bad template stops the start, not an issue; the runtime keeps the one read here.
    template = None if billing is None else load_template(settings.invoice_template)
    rt = Runtime(
        settings,
        handlers.registry.copy(),
        rules,
        billing=billing,
        invoice_template=template,
        kinds=destination_kinds,
    )
    runtime.init_app(app, rt)

    app.add_url_rule(
        settings.webhook_path,
        "webhook",
        receive,
        methods=["POST"],
        provide_automatic_options=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # report fields keep their order
    auth.init_app(app)  # one limiter for every token: the login, the report API, the metrics
    app.register_blueprint(ops.bp)
    app.register_blueprint(api.bp)
    if settings.admin_token:  # without it, the dashboard does not exist at all
        dashboard.init_app(app)
    app.before_request(_start_timer)
    app.after_request(_count_delivery)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(VerificationError, unverified)
    app.register_error_handler(BadEvent, bad_event)
    app.register_error_handler(SQLAlchemyError, database_error)
    cli.init_app(app)
    return app


def _start_timer() -> None:
    rt = current()
    rt.ensure_logging()
    if request.path == rt.settings.webhook_path:
        g.pnm_started = time.perf_counter()


def _count_delivery(response: Response) -> Response:
    started = g.pop("pnm_started", None)
    if started is not None:
        metrics = current().metrics
        metrics.latency.observe(time.perf_counter() - started)
        outcome = g.pop("pnm_outcome", str(response.status_code))
        metrics.deliveries.labels(outcome, g.pop("pnm_reason", "")).inc()
    return response


def _reply(status: int, word: str, headers: Mapping[str, str] | None = None) -> Response:
    g.pnm_outcome = word
    response = Response(_body(word), status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


@functools.cache
def _body(word: str) -> bytes:
    # The answers are few and fixed: each one's bytes are made once.
    return json.dumps({"status": word}).encode()


def _reject(
    status: int, word: str, reason: str, headers: Mapping[str, str] | None = None
) -> Response:
    log.warning("rejected delivery from %s: %s (%d)", request.remote_addr, reason, status)
    return _reply(status, word, headers)


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
    """Answer a delivery that failed verification: 401 without a token, 403 otherwise.

    The metrics name the failed check only when ``/metrics`` is behind its own token:
    on a public page, a count per check would let anyone test guessed API keys.
    """
    g.pnm_reason = exc.kind if current().settings.metrics_token else "token"
    if exc.missing_token:
        return _reject(401, "unauthorized", exc.reason, {"WWW-Authenticate": "Bearer"})
    return _reject(403, "forbidden", exc.reason)


def bad_event(exc: BadEvent) -> Response:
    """Answer a verified body that is not an event."""
    return _reject(400, "bad_request", str(exc))


def database_error(exc: SQLAlchemyError) -> Response:
    """Answer a database error by its kind: 503 to retry, 400 for refused data, 500 for a bug."""
    return _reply(*_database_answer(exc))


Answer = tuple[int, str, dict[str, str]]
"""A delivery's answer: its status, the word of its body and any further headers."""


def _database_answer(exc: SQLAlchemyError) -> Answer:
    if isinstance(exc, CommitterStopped):
        # A reload or a restart: the sender's retry a second later finds another worker,
        # or waits in the socket's queue for the next process.
        log.warning("the receiver is stopping: delivery answered 503 for a retry")
        return 503, "unavailable", {"Retry-After": "1"}
    fault = classify(exc)
    if fault is Fault.TRANSIENT:
        log.error("database unavailable, answered 503 for a retry: %s", describe(exc))
        return 503, "unavailable", {"Retry-After": "5"}
    if fault is Fault.DATA:
        log.error("the database refused the data, answered 400: %s", describe(exc))
        return 400, "bad_request", {}
    log.error("database error (a bug), answered 500: %s", describe(exc))
    return 500, "internal_error", {}


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


def _read_body(max_bytes: int) -> bytes:
    """Read the whole body, refusing one that is unreadable, too long or of another type."""
    try:
        body = request.get_data(cache=False)
    except HTTPException:
        raise
    except Exception as exc:  # the server could not read the body (bad chunk sizes, ...)
        raise BadRequest(f"unreadable body: {type(exc).__name__}") from None
    if len(body) > max_bytes:
        raise RequestEntityTooLarge(f"body over {max_bytes} bytes")
    if request.mimetype not in ACCEPTED_CONTENT_TYPES:
        raise UnsupportedMediaType(f"content type {shown(request.mimetype, 60)}")
    return body


def _delivery(
    body: bytes, digest: bytes, payload: dict[str, Any], api_key: str, tenant: str
) -> Delivery:
    """Describe a verified, parsed delivery as the row to store."""
    room_id, room_sid, created_at = peek(payload)
    event_id = payload.get("id") or None
    refused = None
    if event_id is not None and not _plausible_key(event_id):
        # It cannot key the event: the body's digest does, and the event is kept, refused.
        event_id = None
        refused = "NormalizationError: event.id: not a printable string of at most 200 characters"
    stored = StoredEvent(
        dedupe_key=event_id or f"sha256:{digest.hex()}",
        event_id=event_id,
        event=payload["event"],
        room_id=room_id,
        room_sid=room_sid,
        created_at=created_at,
        received_at=now(),
        api_key=api_key,
        remote_addr=request.remote_addr,
        body_sha256=digest.hex(),
        body=body,
        tenant=tenant,
        handler_status=HandlerStatus.FAILED if refused else HandlerStatus.OK,
        handler_error=refused,
    )
    return Delivery(stored, payload)


def receive() -> Response:
    """Verify a delivery, store it and apply it to the ledger, then acknowledge it."""
    rt = current()
    body = _read_body(rt.settings.max_body_bytes)
    digest = body_digest(body)
    claims = rt.verifier.verify_delivery(
        body, request.headers.get("Authorization"), request.headers.get("Hash-Token"), digest=digest
    )
    payload = parse_event(body)
    problem = rt.schema_problem()
    if problem:
        log.error("delivery of %s answered 503: %s", shown(payload["event"]), problem)
        return _reply(503, "unavailable", {"Retry-After": "30"})

    api_key = claims["iss"]
    delivery = _delivery(body, digest, payload, api_key, rt.settings.tenant_of(api_key))
    later = request.environ.get(ANSWER_LATER)
    if later is not None:
        # The worker answers once the delivery's batch has committed, and counts it then.
        started = g.pop("pnm_started")
        later(functools.partial(_store_later, rt, delivery, started))
        return Response(status=202)  # never sent: the worker writes the real answer
    try:
        result: Result = rt.committer.submit(delivery)
    except SQLAlchemyError as exc:
        result = exc
    return _reply(*_settle(rt, delivery.stored, result))


def _store_later(
    rt: Runtime, delivery: Delivery, started: float, respond: Respond, flush: Flush
) -> None:
    """Hand a delivery to the committer; once its batch commits, count it and ``respond``,
    and ``flush`` once the whole batch is answered."""

    def answer(result: Result) -> None:
        # The connection must be answered whatever happens here: a failure is a 500. It is
        # counted before it is written, so that no answer the sender has is left uncounted.
        try:
            status, word, headers = _settle(rt, delivery.stored, result)
        except Exception:
            log.exception("the answer to a delivery could not be made, answered 500")
            status, word, headers = 500, "internal_error", {}
        try:
            rt.metrics.latency.observe(time.perf_counter() - started)
            rt.metrics.deliveries.labels(word, "").inc()
        except Exception:
            log.exception("a delivery's answer could not be counted")
        body = _body(word)
        fields = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        respond(status, [*fields, *headers.items()], body)

    rt.committer.submit_later(delivery, answer, flush)


def _settle(rt: Runtime, stored: StoredEvent, result: Result) -> Answer:
    """The answer to a delivery from what became of it: an outcome, or the error that kept
    it out (a refused row is told apart from the other database errors by the event)."""
    if isinstance(result, SQLAlchemyError):
        if classify(result) is not Fault.DATA:
            return _database_answer(result)
        log.error(
            "the database refused %s event %s, answered 400: %s",
            shown(stored.event), plain(stored.dedupe_key), describe(result),
        )  # fmt: skip
        return 400, "refused_data", {}
    if isinstance(result, BaseException):
        log.error("storing %s event %s failed (a bug), answered 500",
                  shown(stored.event), plain(stored.dedupe_key), exc_info=result)  # fmt: skip
        return 500, "internal_error", {}
    if result is Outcome.DUPLICATE:
        log.info(
            "Duplicate %s event %s acknowledged; nothing changed.",
            shown(stored.event),
            plain(stored.dedupe_key),
        )
        return 200, "duplicate", {}
    if result is Outcome.CONFLICT:  # the committer has logged both digests
        return 200, "conflict", {}
    label = event_label(stored.event, rt.registry.names)
    rt.metrics.events.labels(label).inc()
    if result is Outcome.HANDLER_FAILED:
        rt.metrics.handler_failures.labels(label).inc()
    return 200, "accepted", {}
