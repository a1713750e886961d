"""Who may see the dashboard: the admin token, once, for a signed session cookie of 12 h.

The cookie is signed with a key made from a random key of the installation, kept in the
database, and the admin token: it says nothing about the token to anyone without the
database, hosts on one database accept each other's sessions, and a new token ends them all.
It is HttpOnly and SameSite=Strict, and Secure when the request came over HTTPS; a session
ends 12 h after its login, however busy. Every POST carries a CSRF token of the session.
The token of a login is checked in a slot of the app's limiter (``web.auth``), shared with
the report API and the metrics: a wrong one gets a 401 page, slowly; one that finds no free
slot gets a 429 at once, right or wrong. Every page forbids framing and inline script (a
strict Content-Security-Policy).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask.wrappers import Request
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.runtime import current
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.keys import instance_key
from plugnmeet_webhooks.storage.migrate import SchemaBehind
from plugnmeet_webhooks.web.auth import RETRY_AFTER, TooManyGuesses, limiter_of

log = logging.getLogger(__name__)

SESSION_HOURS = 12
SESSION_KEY = "dashboard-session"  # the name of its installation key in instance_keys
PREFIX = "/dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
View = TypeVar("View", bound=Callable[..., Any])


class _Sessions(SecureCookieSessionInterface):
    """Flask's signed cookie sessions, signed with the installation's key and the admin token.

    The key is read from the database (made there by whichever host asks first) when a
    dashboard request first needs it, never when the app is made. The cookie is read under
    ``/dashboard`` only, where the browser sends it: no other route waits for the database
    because of it.
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._signer: URLSafeTimedSerializer | None = None

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Return the cookie's signer, or None while the database cannot give the key."""
        if self._signer is None:
            try:
                key = instance_key(runtime.of(app).database(), SESSION_KEY)
            except (SQLAlchemyError, SchemaBehind) as exc:
                # Not kept: the next request asks the database again.
                log.warning("dashboard answered 503: no session key (%s)", describe(exc))
                return None
            # A guess of the token cannot be tested against a cookie without the random key;
            # a new token still makes a new secret, which ends every session.
            secret = hmac.new(key, self._token, hashlib.sha256).digest()
            self._signer = URLSafeTimedSerializer(
                secret,
                salt=self.salt,
                serializer=self.serializer,
                signer_kwargs={
                    "key_derivation": self.key_derivation,
                    "digest_method": self.digest_method,
                },
            )
        return self._signer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Read the session of a dashboard request; other routes get an empty one."""
        if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
            return self.session_class()
        # None (no key yet) makes Flask's null session, which session_ready answers with 503.
        return super().open_session(app, request)


def add_routes(bp: Blueprint) -> None:
    """Give the dashboard its login and logout pages and its headers."""
    bp.add_url_rule("/login", "login", login, methods=["GET", "POST"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
    bp.before_request(session_ready)
    bp.after_request(security_headers)


def init_access(app: Flask) -> None:
    """Set an app's session cookie up; its key is read from the database when first needed."""
    app.session_interface = _Sessions(current_token(app))
    app.config.update(
        SESSION_COOKIE_NAME="pnm_dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH=PREFIX,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        SESSION_REFRESH_EACH_REQUEST=False,  # the cookie ends 12 h after the login
    )


def current_token(app: Flask) -> str:
    """The admin token of an app's settings."""
    token: str = app.extensions["pnm"].settings.admin_token
    return token


def session_ready() -> None:
    """Answer 503 while the session key cannot be read (the next request tries again)."""
    if current_app.session_interface.is_null_session(session):
        abort(503, "The database does not answer. Try again in a few seconds.")


def csrf_token() -> str:
    """The session's CSRF token, made on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf() -> None:
    """Refuse a POST whose form does not carry the session's CSRF token (400)."""
    sent = request.form.get("csrf", "")
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        log.warning("refused dashboard POST from %s: no valid CSRF token", request.remote_addr)
        abort(400, "the form was sent without its session's token; reload the page")


def login_required(view: View) -> View:
    """Let only a signed-in session through; others are sent to the login page."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        since = session.get("since")
        fresh = isinstance(since, int | float) and 0 <= time.time() - since < SESSION_HOURS * 3600
        if session.get("admin") is not True or not fresh:
            session.clear()
            if request.method != "GET" or request.path.endswith("/feed"):
                abort(401)
            return redirect(url_for("dashboard.login", next=request.full_path), code=303)
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Go back only to a dashboard page of this site: a plain path under /dashboard."""
    overview = url_for("dashboard.overview")
    if not target or len(target) > 2000 or not target.isprintable() or "\\" in target:
        return overview
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return overview
    path = unquote(parts.path)  # a browser reads %2e%2e as .. too
    if any(segment in (".", "..") for segment in path.split("/")):
        return overview
    if path != overview and not path.startswith(overview + "/"):
        return overview
    return target


def login() -> Any:
    """Show the login form; take the admin token and sign the session in."""
    if request.method == "GET":
        return render_template("dashboard/login.html", next=request.args.get("next", ""))
    check_csrf()
    presented = request.form.get("token", "")
    try:
        right = limiter_of(current_app).check(presented, current().settings.admin_token or "")
    except TooManyGuesses:
        log.warning("refused dashboard login from %s: too many tokens at once", request.remote_addr)
        page = render_template("dashboard/login.html", next="", busy=True)
        return page, 429, {"Retry-After": RETRY_AFTER}
    if not right:
        log.warning("refused dashboard login from %s: wrong token", request.remote_addr)
        page = render_template(
            "dashboard/login.html", next=request.form.get("next", ""), wrong=True
        )
        return page, 401
    session.clear()
    session.permanent = True
    session["admin"] = True
    session["since"] = int(time.time())
    csrf_token()
    log.info("dashboard login from %s", request.remote_addr)
    return redirect(_safe_next(request.form.get("next")), code=303)


def logout() -> ResponseReturnValue:
    """Sign the session out."""
    check_csrf()
    session.clear()
    return redirect(url_for("dashboard.login"), code=303)


def security_headers(response: Response) -> Response:
    """Forbid framing, inline script and sniffing on every dashboard response."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if response.mimetype in ("text/html", "application/json"):
        response.headers["Cache-Control"] = "no-store"
    return response
