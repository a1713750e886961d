"""The read-only report API: the ledger reports as JSON, behind the admin token."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, jsonify, request

from plugnmeet_webhooks.ledger import periods, reports
from plugnmeet_webhooks.runtime import current
from plugnmeet_webhooks.storage.migrate import SchemaBehind
from plugnmeet_webhooks.web.auth import bearer_is

log = logging.getLogger(__name__)

bp = Blueprint("api", __name__)


def _admin_allowed() -> bool:
    token = current().settings.admin_token
    if token is None:
        return False
    if bearer_is(token):  # a token that finds no free slot is answered 429 (TooManyGuesses)
        return True
    log.warning("refused report request from %s: no valid admin token", request.remote_addr)
    return False


# Every method is routed here so that, without the token, nothing (not even OPTIONS or a
# 405) tells a caller these routes exist.
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("/api/<path:name>", methods=_ANY_METHOD, provide_automatic_options=False)
def api_report(name: str) -> tuple[Response, int]:
    """Serve a ledger report as JSON; only with the admin token, else it does not exist (404)."""
    if request.method not in ("GET", "HEAD") or not _admin_allowed():
        abort(404)
    if name not in reports.REPORTS:
        abort(404)
    try:
        filters = periods.Filters.parse(
            request.args.get("since"),
            request.args.get("until"),
            request.args.get("room"),
            request.args.get("tenant"),
        )
        reports.check(name, filters)
    except ValueError as exc:
        return jsonify(status="bad_request", error=f"{exc}."), 400
    try:
        engine = current().database()
    except SchemaBehind:
        return jsonify(status="unavailable", reason="schema"), 503
    with engine.connect() as conn:
        return jsonify(reports.build(conn, name, filters).as_dict()), 200
