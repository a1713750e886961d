"""The dashboard through Flask's test client: access, every page and filter, every action."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from contextlib import contextmanager
from dataclasses import replace

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import make_engine, write_transaction
from plugnmeet_webhooks.storage.keys import instance_keys
from tests.support.helpers import corpus, corpus_bodies, deliver, report, stored_rows

ADMIN = "d" * 20 + "-dashboard-token"
CORPUS_DAY = "2025-11-26"
PERIOD = f"since={CORPUS_DAY}&until={CORPUS_DAY}"


@pytest.fixture
def dash(settings):
    application = create_app(replace(settings, admin_token=ADMIN))
    yield application
    runtime.of(application).close()


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def login(client) -> None:
    page = client.get("/dashboard/login").get_data(as_text=True)
    answer = client.post("/dashboard/login", data={"token": ADMIN, "csrf": _csrf(page)})
    assert answer.status_code == 303


@pytest.fixture
def signed_in(dash):
    client = dash.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    login(client)
    return client


def test_without_an_admin_token_there_is_no_dashboard(app, client):
    for path in ("/dashboard", "/dashboard/login", "/dashboard/events", "/dashboard/outbox",
                 "/dashboard/static/dashboard.css"):  # fmt: skip
        assert client.get(path).status_code == 404
    assert client.post("/dashboard/login", data={"token": "x" * 30}).status_code == 404


def test_pages_need_a_login_and_send_strict_headers(dash):
    client = dash.test_client()
    for path in ("/dashboard", "/dashboard/events", "/dashboard/outbox", "/dashboard/rooms/r"):
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/dashboard/login?next=")
    assert client.get("/dashboard/events/feed").status_code == 401
    page = client.get("/dashboard/login")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in page.get_data(as_text=True), "no inline script"


def test_login_sets_a_strict_session_cookie_and_logout_ends_it(dash):
    client = dash.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    answer = client.post(
        "/dashboard/login", data={"token": ADMIN, "csrf": _csrf(page), "next": "/dashboard/outbox"}
    )
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/outbox")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS it is Secure
    assert "Expires=" in cookie
    assert ADMIN not in cookie and ADMIN not in answer.headers["Location"]
    assert client.get("/dashboard").status_code == 200

    overview = client.get("/dashboard").get_data(as_text=True)
    assert client.post("/dashboard/logout", data={"csrf": _csrf(overview)}).status_code == 303
    assert client.get("/dashboard").status_code == 303


def test_over_https_the_session_cookie_is_secure(dash):
    client = dash.test_client()
    page = client.get("/dashboard/login", base_url="https://dash.example").get_data(as_text=True)
    answer = client.post(
        "/dashboard/login",
        data={"token": ADMIN, "csrf": _csrf(page)},
        base_url="https://dash.example",
    )
    assert "Secure" in answer.headers["Set-Cookie"]


def test_behind_an_https_proxy_the_session_cookie_is_secure(settings):
    proxied = create_app(replace(settings, admin_token=ADMIN, proxy_count=1))
    try:
        client = proxied.test_client()
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        page = client.get("/dashboard/login", headers=https).get_data(as_text=True)
        answer = client.post(
            "/dashboard/login", data={"token": ADMIN, "csrf": _csrf(page)}, headers=https
        )
        assert answer.status_code == 303
        assert "Secure" in answer.headers["Set-Cookie"]
    finally:
        runtime.of(proxied).close()


def _signer(secret: str | bytes):
    """Flask's own cookie signer for ``secret``: what a guesser holding a cookie would run."""
    probe = Flask("probe")
    probe.secret_key = secret
    return SecureCookieSessionInterface().get_signing_serializer(probe)


def _session_keys(app) -> list[tuple[str, bytes]]:
    with runtime.of(app).engine.connect() as conn:
        rows = conn.execute(sa.select(instance_keys.c.name, instance_keys.c.value)).all()
    return [(name, bytes.fromhex(value)) for name, value in rows]


def _cookie(client) -> str:
    return client.get_cookie("pnm_dashboard", path="/dashboard").value


def _with_cookie(application, value: str):
    client = application.test_client()
    client.set_cookie("pnm_dashboard", value, path="/dashboard")
    return client


def test_the_cookie_tests_nothing_without_the_installations_key(dash):
    anonymous = dash.test_client()
    assert anonymous.get("/dashboard/login").status_code == 200
    cookie = _cookie(anonymous)  # set for the login form's CSRF token, before any login

    # The old derivation, from the admin token alone, no longer verifies it...
    token_only = hmac.new(ADMIN.encode(), b"pnm-dashboard-session", hashlib.sha256).hexdigest()
    with pytest.raises(BadSignature):
        _signer(token_only).loads(cookie)
    with pytest.raises(BadSignature):
        _signer(ADMIN).loads(cookie)
    # ...the installation's random key, made once and kept in the database, with it does.
    [(name, key)] = _session_keys(dash)
    assert name == "dashboard-session" and len(key) == 32
    secret = hmac.new(key, ADMIN.encode(), hashlib.sha256).digest()
    assert set(_signer(secret).loads(cookie)) == {"csrf"}

    login(anonymous)
    assert anonymous.get("/dashboard").status_code == 200
    assert _session_keys(dash) == [(name, key)]  # made once, not per request


def test_hosts_on_one_database_share_sessions_until_the_token_or_key_changes(dash, settings):
    client = dash.test_client()
    login(client)
    cookie = _cookie(client)
    second = create_app(replace(settings, admin_token=ADMIN))  # another host, same database
    other_token = create_app(replace(settings, admin_token=ADMIN + "-new"))
    try:
        assert _with_cookie(second, cookie).get("/dashboard").status_code == 200
        assert _session_keys(second) == _session_keys(dash)  # one key for every host

        answer = _with_cookie(other_token, cookie).get("/dashboard")
        assert answer.status_code == 303 and "/dashboard/login" in answer.headers["Location"]
        assert len(_session_keys(dash)) == 1
    finally:
        runtime.of(second).close()
        runtime.of(other_token).close()

    # A new installation key (another database, the same token) refuses the cookie too.
    with runtime.of(dash).engine.begin() as conn:
        conn.execute(sa.delete(instance_keys))
    reinstalled = create_app(replace(settings, admin_token=ADMIN))
    try:
        answer = _with_cookie(reinstalled, cookie).get("/dashboard")
        assert answer.status_code == 303 and "/dashboard/login" in answer.headers["Location"]
    finally:
        runtime.of(reinstalled).close()


@contextmanager
def _keys_locked(url: str):
    """Hold a lock that keeps the session key from being read or made, as a stuck writer would."""
    engine = make_engine(url)
    try:
        with write_transaction(engine) as conn:  # SQLite: BEGIN IMMEDIATE, the write lock
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("LOCK TABLE instance_keys IN ACCESS EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def test_a_database_that_cannot_give_the_key_is_a_503_and_asked_again(settings, database_url):
    application = create_app(replace(settings, admin_token=ADMIN, db_timeout=0.2))
    try:
        assert runtime.of(application).schema_problem() is None
        client = application.test_client()
        with _keys_locked(database_url):
            for path in ("/dashboard/login", "/dashboard"):
                answer = client.get(path)
                assert answer.status_code == 503, path
                assert answer.headers["Retry-After"] == "5"
                assert "Try again" in answer.get_data(as_text=True)
                assert "Set-Cookie" not in answer.headers
        assert client.get("/dashboard/login").status_code == 200  # asked again, and made
        login(client)
        assert client.get("/dashboard").status_code == 200
    finally:
        runtime.of(application).close()


def test_making_the_app_and_other_routes_never_ask_for_the_session_key(settings, caplog):
    unreachable = "postgresql://nobody@127.0.0.1:9/none"
    application = create_app(replace(settings, admin_token=ADMIN, database_url=unreachable))
    try:
        client = application.test_client()
        client.set_cookie("pnm_dashboard", "sent.where.it.does.not.belong", path="/")
        assert client.get("/healthz").status_code == 200
        assert "no session key" not in caplog.text
        answer = client.get("/dashboard/login")
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
        assert answer.mimetype == "text/html"
        assert "dashboard answered 503: no session key" in caplog.text
    finally:
        runtime.of(application).close()


def test_a_session_ends_twelve_hours_after_its_login(signed_in):
    assert signed_in.get("/dashboard").status_code == 200
    with signed_in.session_transaction("/dashboard") as state:
        state["since"] -= 12 * 3600 + 1
    answer = signed_in.get("/dashboard")
    assert answer.status_code == 303 and "/dashboard/login" in answer.headers["Location"]
    # Busy pages do not stretch it: the cookie is not re-sent on each request.
    login(signed_in)
    assert "Set-Cookie" not in signed_in.get("/dashboard").headers


def test_a_wrong_token_is_a_slow_401(dash, caplog):
    client = dash.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    started = time.monotonic()
    answer = client.post("/dashboard/login", data={"token": ADMIN + "x", "csrf": _csrf(page)})
    assert time.monotonic() - started >= 0.4  # slowed, to make guessing slow
    assert answer.status_code == 401
    assert "That is not the admin token." in answer.get_data(as_text=True)
    assert client.get("/dashboard").status_code == 303
    assert ADMIN not in caplog.text and "refused dashboard login" in caplog.text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/dashboard",
        "/\\evil.example",
        "/dashboard\\@evil.example",
        "/dashboard/../x",
        "/dashboard/%2e%2e/x",
        "/dashboard\r\nX-Evil: 1",
        "/dashboardx",
        "javascript:alert(1)",
    ],
)
def test_a_next_address_elsewhere_is_ignored(dash, target):
    client = dash.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    answer = client.post(
        "/dashboard/login", data={"token": ADMIN, "csrf": _csrf(page), "next": target}
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/dashboard"


def test_a_next_page_of_the_dashboard_is_kept(dash):
    client = dash.test_client()
    page = client.get("/dashboard/login").get_data(as_text=True)
    target = "/dashboard/events?event=room_started"
    answer = client.post(
        "/dashboard/login", data={"token": ADMIN, "csrf": _csrf(page), "next": target}
    )
    assert answer.headers["Location"] == target


@pytest.mark.parametrize("path", ["/dashboard/login", "/dashboard/logout"])
def test_every_post_needs_the_csrf_token(dash, path):
    client = dash.test_client()
    client.get("/dashboard/login")
    answer = client.post(path, data={"token": ADMIN})
    assert answer.status_code == 400
    assert client.get("/dashboard").status_code == 303


def test_actions_refuse_a_missing_or_foreign_csrf_token(signed_in, dash):
    failed = signed_in.post("/dashboard/events/1/replay", data={"csrf": "forged"})
    assert failed.status_code == 400
    other = dash.test_client()
    login(other)
    foreign = _csrf(other.get("/dashboard").get_data(as_text=True))
    assert (
        signed_in.post(
            "/dashboard/outbox/retry", data={"csrf": foreign, "all_dead": "1"}
        ).status_code
        == 400
    )


def test_overview_shows_the_report_apis_figures(signed_in, dash):
    page = signed_in.get(f"/dashboard?{PERIOD}").get_data(as_text=True)
    rooms = report(dash, "rooms")["total"]
    assert re.search(r'id="total-minutes">43<', page)
    assert re.search(r'id="total-sessions">1<', page)
    assert re.search(r'id="total-attendee-minutes">124<', page)
    assert re.search(r'id="total-cost">0\.459858<', page)
    assert re.search(r'id="total-no-cost">1<', page)
    assert rooms["ai_cost"] == 0.459858 and rooms["attendee_minutes"] == 124
    usage, days = report(dash, "usage")["total"], report(dash, "days")["total"]
    assert usage["artifacts_without_cost"] == days["artifacts_without_cost"] == 1
    assert days["billable_minutes"] == rooms["billable_minutes"] == 43
    assert 'href="/dashboard/rooms/weekly-standup' in page
    # The charts' data and their tables.
    assert 'id="minutes-chart"' in page and 'id="cost-chart"' in page
    assert "CHAT_TRANSLATION_USAGE" in page and CORPUS_DAY in page


def test_overview_periods_presets_custom_and_bad(signed_in):
    for query in ("", "?days=7", "?days=90", f"?{PERIOD}", "?days=12345"):
        assert signed_in.get(f"/dashboard{query}").status_code == 200
    bad = signed_in.get("/dashboard?since=yesterday").get_data(as_text=True)
    assert "since must be a date like 2026-11-01" in bad
    empty = signed_in.get("/dashboard?days=7").get_data(as_text=True)
    assert re.search(r'id="total-minutes">0<', empty), "the corpus is older than a week"


def test_a_room_page_has_sessions_timeline_usage_and_files(signed_in):
    page = signed_in.get(f"/dashboard/rooms/weekly-standup?{PERIOD}").get_data(as_text=True)
    assert re.search(r'id="room-minutes">43<', page)
    assert re.search(r'id="room-cost">0\.459858<', page)
    for name in ("Alice Admin", "Bob Björnsson", "Carol (VIP)", "RECORDING", "MEETING_SUMMARY"):
        assert name in page, name
    assert page.count('data-chart="') == 1
    assert "badge api" not in page and "plugNmeet API" not in page  # its end: a delivery
    assert signed_in.get("/dashboard/rooms/elsewhere").status_code == 200


def test_events_page_filters_and_feed(signed_in):
    page = signed_in.get("/dashboard/events").get_data(as_text=True)
    assert page.count("<tr") == 1 + 28
    joined = signed_in.get("/dashboard/events?event=participant_joined").get_data(as_text=True)
    assert joined.count("<tr") == 1 + 3
    none = signed_in.get("/dashboard/events?handler=failed").get_data(as_text=True)
    assert "No events match." in none
    dated = signed_in.get("/dashboard/events?since=2999-01-01").get_data(as_text=True)
    assert "No events match." in dated
    assert "must be a date" in signed_in.get("/dashboard/events?since=soon").get_data(as_text=True)

    newest = max(r["id"] for r in stored_rows(signed_in.application))
    feed = signed_in.get(f"/dashboard/events/feed?after={newest - 2}").get_json()
    # Oldest first: a burst larger than a page arrives in full over the next polls.
    assert [r["id"] for r in feed["rows"]] == [newest - 1, newest]
    assert signed_in.get("/dashboard/events/feed?after=x").status_code == 400


def test_the_events_page_pages_back_and_a_burst_reaches_the_feed_in_full(signed_in, monkeypatch):
    from plugnmeet_webhooks.web.dashboard import views

    monkeypatch.setattr(views, "PAGE", 10)
    ids = sorted(r["id"] for r in stored_rows(signed_in.application))
    first = signed_in.get("/dashboard/events").get_data(as_text=True)
    assert 'data-live="true"' in first
    older = re.search(r'href="(/dashboard/events\?before=(\d+)[^"]*)"', first)
    assert older and int(older.group(2)) == ids[-10]
    second = signed_in.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    row_link = r'<th scope="row"><a href="/dashboard/events/(\d+)"'
    shown = [int(n) for n in re.findall(row_link, second)]
    assert shown == ids[-20:-10][::-1]
    assert 'data-live="false"' in second and "Back to the newest events" in second
    seen: list[int] = []
    after = 0
    while rows := signed_in.get(f"/dashboard/events/feed?after={after}").get_json()["rows"]:
        seen += [r["id"] for r in rows]
        after = rows[-1]["id"]
    assert seen == ids


@pytest.mark.parametrize(
    "url",
    [
        "/dashboard/events/999999999999999999999999999999",
        "/dashboard/events/feed?after=99999999999999999999",
        "/dashboard/events/feed?after=-1",
        "/dashboard/events?before=99999999999999999999999",
        "/dashboard/events?event=a%00b",
        "/dashboard/events?room=" + "r" * 300,
        "/dashboard?since=1970-01-01&until=9998-12-31",
        "/api/days?since=1970-01-01&until=9998-12-31",
    ],
)
def test_hostile_numbers_and_names_are_clean_answers(signed_in, url):
    answer = signed_in.get(url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code in (200, 400, 404)
    if answer.status_code == 200:
        text = answer.get_data(as_text=True)
        assert 'role="alert"' in text or "flash error" in text, text[:300]
    if "9998" in url:
        assert "at most 3,660 days" in answer.get_data(as_text=True)


def test_hostile_ids_in_actions_are_refused(signed_in):
    page = signed_in.get("/dashboard/outbox").get_data(as_text=True)
    csrf = _csrf(page)
    huge = "9" * 30
    replayed = signed_in.post(f"/dashboard/events/{huge}/replay", data={"csrf": csrf})
    assert replayed.status_code == 404
    retried = signed_in.post("/dashboard/outbox/retry", data={"csrf": csrf, "id": huge})
    assert retried.status_code == 400
    assert signed_in.post("/dashboard/outbox/retry", data={"csrf": csrf}).status_code == 400


def test_an_event_page_shows_fields_and_body_and_replays_a_failure(signed_in, dash):
    body = corpus("session_ended")
    failing = body.replace(b'"created_at":"1764173565"', b'"created_at":"1"').replace(
        b"dee82387", b"fee82387"
    )
    assert deliver(signed_in, failing).status == 200
    [row] = [r for r in stored_rows(dash) if r["handler_status"] == "failed"]
    page = signed_in.get(f"/dashboard/events/{row['id']}").get_data(as_text=True)
    assert "Its handler failed" in page and "a time before 2020-01-01" in page
    assert "&#34;room_id&#34;: &#34;weekly-standup&#34;" in page  # the raw body, escaped
    csrf = _csrf(page)
    replayed = signed_in.post(f"/dashboard/events/{row['id']}/replay", data={"csrf": csrf})
    assert replayed.status_code == 303
    after = signed_in.get(replayed.headers["Location"]).get_data(as_text=True)
    assert "its handler still fails" in after
    assert signed_in.get("/dashboard/events/999999").status_code == 404


def test_outbox_page_lists_and_retries(signed_in, dash):
    from plugnmeet_webhooks.storage import outbox
    from plugnmeet_webhooks.storage.outbox import Message, enqueue

    engine = runtime.of(dash).database()
    with engine.begin() as conn:
        enqueue(conn, [Message("msg_x", "t", "rule-a", "ops", "k", "session_ended", "r", b"{}")])
        conn.execute(outbox.outbox.update().values(state="dead", last_error="HTTP 400"))
    page = signed_in.get("/dashboard/outbox").get_data(as_text=True)
    assert re.search(r'id="outbox-dead">1<', page) and "HTTP 400" in page and "rule-a" in page
    answer = signed_in.post("/dashboard/outbox/retry", data={"csrf": _csrf(page), "id": "1"})
    assert answer.status_code == 303
    assert outbox.counts(engine)[0]["pending"] == 1
    # A message already sent is not sent again from a stale page.
    with engine.begin() as conn:
        conn.execute(outbox.outbox.update().values(state="sent"))
    again = signed_in.post("/dashboard/outbox/retry", data={"csrf": _csrf(page), "id": "1"})
    assert again.status_code == 303
    assert outbox.counts(engine)[0]["sent"] == 1 and outbox.counts(engine)[0]["pending"] == 0
    assert "1 messages are pending again." in signed_in.get("/dashboard/outbox").get_data(
        as_text=True
    )


def test_replaying_one_row_takes_that_row_only_when_tenants_share_an_event_id(app, client):
    from plugnmeet_webhooks.storage.events import EventFilter, count_matching
    from tests.support.helpers import OTHER_KEY, OTHER_SECRET

    body = corpus("participant_joined")
    assert deliver(client, body).status == 200
    assert deliver(client, body, key=OTHER_KEY, secret=OTHER_SECRET).status == 200
    rows = stored_rows(app)
    assert len(rows) == 2 and rows[0]["dedupe_key"] == rows[1]["dedupe_key"]
    engine = runtime.of(app).database()
    assert count_matching(engine, EventFilter(row_id=rows[0]["id"])) == 1
    assert count_matching(engine, EventFilter(event_key=rows[0]["dedupe_key"])) == 2


def test_the_days_report_has_a_row_for_every_day_even_with_an_open_end(signed_in, dash):
    from datetime import date

    from plugnmeet_webhooks.ledger import periods, reports

    rows = report(dash, "days", since=date(2025, 11, 20))["rows"]
    assert [r["day"] for r in rows] == [f"2025-11-{d}" for d in range(20, 27)]
    assert [r["billable_minutes"] for r in rows] == [0] * 6 + [43]
    with pytest.raises(ValueError, match="at most 3,660 days"):
        reports.check("days", periods.Filters.parse("2000-01-01", "2020-01-01", None))
