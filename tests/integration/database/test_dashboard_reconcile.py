"""Reconciliation on the dashboard: where each event came from, the last passes, and the
sessions whose end came from plugNmeet's API.

The corpus is delivered without its session_ended and room_finished, and a pass against the
local plugNmeet API (tests/support/plugnmeet_api.py) closes the session from the API's answer.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from config import PlugNmeetServer
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.reconcile.worker import run_pass
from plugnmeet_webhooks.storage import passes
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import events
from plugnmeet_webhooks.web.dashboard.views import _when
from tests.integration.database.test_dashboard import ADMIN, PERIOD, login
from tests.integration.database.test_reconcile import SID, SINCE
from tests.support.helpers import CORPUS, KEY, OTHER_KEY, SECRET, deliver
from tests.support.plugnmeet_api import PlugNmeetApi

ENDS = ("room_finished", "session_ended")
API_ROW = re.compile(r"<tr[^>]*>.*?</tr>", re.S)
RECONCILE_TITLE = "Reconciliation with plugNmeet's API"


@pytest.fixture
def reconciling(make_app, plugnmeet) -> Any:
    """A dashboard whose reconciliation asks the local plugNmeet API; the corpus is delivered
    except the session's end, and the client is logged in (no pass has run yet)."""
    server = PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET)
    app = make_app(plugnmeet_servers=(server,), reconcile_interval=None, admin_token=ADMIN)
    client = app.test_client()
    for path in CORPUS:
        if not path.stem.endswith(ENDS):
            assert deliver(client, path.read_bytes()).status == 200, path.name
    login(client)
    return client


def reconcile(client: Any) -> passes.PassRecord:
    """Run a pass; return it as kept."""
    rt = runtime.of(client.application)
    assert run_pass(rt.database(), rt.reconciler(timeout=2.0), since=SINCE) is not None
    return passes.latest(rt.database(), 1)[0]


@pytest.fixture
def reconciled(reconciling) -> Any:
    done = reconcile(reconciling)
    assert (done.outcome, done.closed) == (passes.COMPLETED, 1)
    return reconciling


def page(client: Any, url: str) -> str:
    answer = client.get(url)
    assert answer.status_code == 200, url
    return answer.get_data(as_text=True)


def event_rows(text: str) -> list[str]:
    body = text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [row for row in API_ROW.findall(body) if 'class="empty"' not in row]


def reconcile_block(text: str) -> str:
    found = re.search(r'<section class="reconcile".*?</section>', text, re.S)
    assert found, "the overview has no reconciliation block"
    return found.group(0)


def no_server_details(text: str, plugnmeet: PlugNmeetApi) -> None:
    for secret in (plugnmeet.url, "127.0.0.1:", SECRET, ADMIN):
        assert secret not in text


# --- the events and an event ------------------------------------------------------------------


def test_the_events_page_shows_each_events_source_and_filters_by_it(reconciled, plugnmeet):
    everything = event_rows(page(reconciled, "/dashboard/events"))
    assert len(everything) == len(CORPUS) - len(ENDS) + 1
    [fact] = [row for row in everything if f"api:session_ended:{SID}" in row]
    assert '<span class="badge api">plugNmeet API</span>' in fact and "session_ended" in fact
    deliveries = [row for row in everything if row is not fact]
    assert all("<td>webhook</td>" in row and "badge" not in row for row in deliveries)

    only_api = page(reconciled, "/dashboard/events?source=api")
    assert event_rows(only_api) == [fact]
    assert '<option value="api" selected>plugNmeet API</option>' in only_api
    assert "source=api" in re.search(r'data-feed="([^"]*)"', only_api).group(1)
    only_webhooks = event_rows(page(reconciled, "/dashboard/events?source=webhook"))
    assert only_webhooks == deliveries
    none = page(reconciled, "/dashboard/events?source=api&event=participant_joined")
    assert "No events match." in none

    # An unknown source filters nothing, and is not carried into the links.
    for odd in ("bogus", "API", "%00", "x" * 500):
        text = page(reconciled, f"/dashboard/events?source={odd}")
        assert len(event_rows(text)) == len(everything)
        assert "source=&amp;" in re.search(r'data-feed="([^"]*)"', text).group(1)
    assert reconciled.get("/dashboard/events/feed?after=0&source=bogus").status_code == 200

    feed = reconciled.get("/dashboard/events/feed?after=0&source=api").get_json()["rows"]
    assert [(r["event"], r["source"], r["source_label"]) for r in feed] == [
        ("session_ended", "api", "plugNmeet API")
    ]
    webhook_feed = reconciled.get("/dashboard/events/feed?after=0&source=webhook").get_json()
    assert {(r["source"], r["source_label"]) for r in webhook_feed["rows"]} == {
        ("webhook", "webhook")
    }
    no_server_details(page(reconciled, "/dashboard/events"), plugnmeet)


def test_an_api_facts_page_says_it_is_plugnmeets_answer_for_a_lost_delivery(reconciled, plugnmeet):
    text = page(reconciled, "/dashboard/events?source=api")
    fact_url = re.search(r'href="(/dashboard/events/\d+)"', text).group(1)
    fact = page(reconciled, fact_url)
    assert re.search(r'id="event-source"><span class="badge api">plugNmeet API</span>', fact)
    assert "What plugNmeet's API answered for a lost delivery" in fact
    assert "<code>/auth/room/fetchPastRooms</code>" in fact
    assert "Stored (UTC)" in fact
    assert "&#34;api&#34;: {" in fact and "&#34;answer&#34;: {" in fact  # the body, escaped
    no_server_details(fact, plugnmeet)

    # A URL in plugNmeet's answer (a room's own webhook_url may carry a token) is not shown.
    row_id = int(fact_url.rsplit("/", 1)[1])
    engine = runtime.of(reconciled.application).database()
    with engine.begin() as conn:
        body = json.loads(conn.execute(select(events.c.body).where(events.c.id == row_id)).scalar())
        body["api"]["answer"]["webhook_url"] = "https://app.example/hook?token=s3cr3t-hook-token"
        body["api"]["answer"]["extra"] = [{"link": "http://files.example/r.mp4?sig=abc"}]
        changed = json.dumps(body).encode()
        conn.execute(events.update().where(events.c.id == row_id).values(body=changed))
    hidden = page(reconciled, fact_url)
    assert "s3cr3t-hook-token" not in hidden and "files.example" not in hidden
    assert hidden.count("(a URL, not shown)") == 2
    assert "&#34;room_sid&#34;: &#34;RM_hK3v9QpZt2Lx&#34;" in hidden  # the rest as it is

    text = page(reconciled, "/dashboard/events?source=webhook")
    delivery = page(reconciled, re.search(r'href="(/dashboard/events/\d+)"', text).group(1))
    assert 'id="event-source">webhook delivery<' in delivery
    assert "lost delivery" not in delivery and "badge api" not in delivery
    assert "Received (UTC)" in delivery


# --- the overview -----------------------------------------------------------------------------


def test_the_overview_shows_the_last_pass_and_the_sessions_ended_from_the_api(
    reconciled, plugnmeet
):
    done = passes.latest(runtime.of(reconciled.application).database(), 1)[0]
    text = page(reconciled, f"/dashboard?{PERIOD}")
    block = reconcile_block(text)
    assert RECONCILE_TITLE in block
    assert "Last completed pass (UTC)" in block and _when(done.finished_at) in block
    assert "failed" not in block and "no reconciliation pass yet" not in block
    assert re.search(r'id="api-sessions">1<', block)
    link = '<a href="/dashboard/rooms/weekly-standup?since=2025-11-26&amp;until=2025-11-26">'
    assert f"{link}weekly-standup</a>" in block
    assert f'<td class="mono">{SID}</td>' in block
    assert "2025-11-26 15:30:00" in block and "2025-11-26 16:12:45" in block
    no_server_details(text, plugnmeet)

    # A period without that session: the pass still shows, no session is listed.
    later = reconcile_block(page(reconciled, "/dashboard?days=7"))
    assert _when(done.finished_at) in later
    assert re.search(r'id="api-sessions">0<', later) and SID not in later
    # Another tenant's period: none of this tenant's sessions.
    other = reconcile_block(page(reconciled, f"/dashboard?{PERIOD}&tenant={OTHER_KEY}"))
    assert re.search(r'id="api-sessions">0<', other)


def test_the_overview_says_when_no_pass_ran_yet(reconciling):
    block = reconcile_block(page(reconciling, f"/dashboard?{PERIOD}"))
    assert "no reconciliation pass yet" in block
    assert re.search(r'id="api-sessions">0<', block) and "<table" not in block


def test_without_a_plugnmeet_server_the_overview_has_no_reconciliation(make_app):
    app = make_app(admin_token=ADMIN)
    client = app.test_client()
    for path in CORPUS:
        assert deliver(client, path.read_bytes()).status == 200
    login(client)
    text = page(client, f"/dashboard?{PERIOD}")
    assert 'class="reconcile"' not in text and "Reconciliation" not in text
    assert "api-sessions" not in text


def test_a_failed_pass_shows_with_its_error_until_a_later_pass_completes(reconciling, plugnmeet):
    plugnmeet.fault = "503"
    failed = reconcile(reconciling)
    assert failed.outcome == passes.FAILED and failed.error
    block = reconcile_block(page(reconciling, f"/dashboard?{PERIOD}"))
    assert "none yet" in block and "no reconciliation pass yet" not in block
    assert '<span class="status failed">failed</span>' in block
    assert f"{_when(failed.finished_at)}: {failed.error}" in block
    assert "HTTP 503" in block

    plugnmeet.fault = None
    completed = reconcile(reconciling)
    assert completed.outcome == passes.COMPLETED
    block = reconcile_block(page(reconciling, f"/dashboard?{PERIOD}"))
    assert _when(completed.finished_at) in block
    assert "failed" not in block, "a failure before the last completed pass is over"

    plugnmeet.stop()
    refused = reconcile(reconciling)
    assert refused.outcome == passes.FAILED and "connection refused" in refused.error
    text = page(reconciling, f"/dashboard?{PERIOD}")
    block = reconcile_block(text)
    assert _when(completed.finished_at) in block
    assert f"{_when(refused.finished_at)}: {refused.error}" in block
    no_server_details(text, plugnmeet)


def test_every_servers_passes_are_shown_and_an_error_is_escaped(make_app):
    servers = tuple(
        PlugNmeetServer(tenant, f"https://{tenant}.meet.invalid", tenant, SECRET)
        for tenant in (KEY, OTHER_KEY)
    )
    app = make_app(plugnmeet_servers=servers, reconcile_interval=None, admin_token=ADMIN)
    engine = runtime.of(app).database()
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()

    def kept(tenant: str, outcome: str, at: float, error: str | None = None) -> None:
        with write_transaction(engine) as conn:
            passes.record(conn, passes.PassRecord(tenant, at, at + 2, SINCE, outcome, error=error))

    kept(KEY, passes.COMPLETED, start)
    kept(KEY, passes.FAILED, start + 300, "the plugNmeet server refused <b>x</b> & more")
    kept(KEY, passes.FAILED, start + 600, "the plugNmeet server answered room/fetchPastRooms")
    client = app.test_client()
    login(client)

    text = page(client, "/dashboard")
    block = reconcile_block(text)
    assert f"{KEY}: last completed pass" in block and f"{OTHER_KEY}: last completed pass" in block
    assert "2026-01-05 09:00:02" in block
    assert "2026-01-05 09:10:02: the plugNmeet server answered room/fetchPastRooms" in block
    assert "<b>x</b>" not in block  # only the newest failure, and never as markup
    assert "no reconciliation pass yet" in block  # the other tenant's server
    assert ".meet.invalid" not in text

    kept(OTHER_KEY, passes.FAILED, start + 900, "the plugNmeet server refused <b>x</b> & more")
    one = reconcile_block(page(client, f"/dashboard?tenant={OTHER_KEY}"))
    assert "Last completed pass (UTC)" in one and "none yet" in one
    assert (
        "2026-01-05 09:15:02: the plugNmeet server refused &lt;b&gt;x&lt;/b&gt; &amp; more" in one
    )
    assert "<b>x</b>" not in one and "09:10:02" not in one  # the other tenant's is not shown


# --- the room ---------------------------------------------------------------------------------


def test_the_room_page_marks_a_session_whose_end_came_from_the_api(reconciled):
    text = page(reconciled, f"/dashboard/rooms/weekly-standup?{PERIOD}")
    assert re.search(r'<span class="badge api"[^>]*>end from plugNmeet API</span>', text)
    assert re.search(r'id="room-minutes">43<', text)
