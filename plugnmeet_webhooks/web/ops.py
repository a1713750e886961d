"""Operations routes: health, readiness and the Prometheus metrics."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.runtime import current
from plugnmeet_webhooks.web.auth import bearer_is

log = logging.getLogger(__name__)

bp = Blueprint("ops", __name__)


@bp.get("/healthz", provide_automatic_options=False)
def healthz() -> Response:
    """Say the process is alive (no database check)."""
    return jsonify(status="ok")


@bp.get("/readyz", provide_automatic_options=False)
def readyz() -> tuple[Response, int]:
    """Say whether deliveries can be stored now: the database answers, the schema is current."""
    rt = current()
    try:
        if rt.schema_problem():
            return jsonify(status="unavailable", reason="schema"), 503
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("not ready: database unreachable (%s)", type(exc).__name__)
        return jsonify(status="unavailable", reason="database"), 503
    return jsonify(status="ready"), 200


@bp.get("/metrics", provide_automatic_options=False)
def metrics_page() -> Response:
    """Serve the Prometheus metrics of every worker (behind ``PNM_METRICS_TOKEN`` if set)."""
    rt = current()
    token = rt.settings.metrics_token
    if token is not None and not bearer_is(token):
        log.warning("refused metrics request from %s: no valid metrics token", request.remote_addr)
        answer = jsonify(status="unauthorized")
        answer.status_code = 401
        answer.headers["WWW-Authenticate"] = "Bearer"
        return answer
    body, content_type = rt.metrics_page()
    return Response(body, content_type=content_type)
