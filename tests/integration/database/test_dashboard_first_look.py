"""A period with nothing in it says so, and offers the period of the newest data: a new user
who sent the samples (dated long ago) sees where they are instead of zeros."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest

from app import create_app
from plugnmeet_webhooks import runtime
from tests.integration.database.test_dashboard import ADMIN, CORPUS_DAY, login
from tests.support.helpers import KEY, OTHER_KEY, corpus_bodies, deliver

EMPTY = "No sessions or AI usage in this period."
NEWEST_PERIOD = {"since": ["2025-10-28"], "until": [CORPUS_DAY]}  # the 30 days to the corpus


@pytest.fixture
def dash(settings):
    application = create_app(replace(settings, admin_token=ADMIN))
    yield application.test_client()
    runtime.of(application).close()


@pytest.fixture
def with_corpus(dash):
    for body in corpus_bodies():
        assert deliver(dash, body).status == 200
    login(dash)
    return dash


def _page(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _note(page: str) -> str:
    """The page's note on an empty period, as text."""
    found = re.search(r'<p class="flash note" role="note" id="empty-period">(.*?)</p>', page, re.S)
    assert found, "the page says its period is empty"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def _newest_link(page: str) -> str | None:
    found = re.search(r'id="newest-period" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_an_empty_ledger_says_nothing_is_recorded_yet(dash):
    login(dash)
    page = _page(dash, "/dashboard")
    assert _note(page) == f"{EMPTY} Nothing is recorded yet."
    assert _newest_link(page) is None
    assert re.search(r'id="total-minutes">0<', page)

    room = _page(dash, "/dashboard/rooms/weekly-standup")
    assert _note(room) == (
        "Nothing is known of room weekly-standup in this period. Nothing is recorded of it at all."
    )
    assert _newest_link(room) is None


def test_the_default_period_before_the_corpus_offers_the_days_of_the_newest_data(with_corpus):
    page = _page(with_corpus, "/dashboard")  # the last 30 days: the corpus is of 2025-11-26
    assert re.search(r'id="total-minutes">0<', page)
    assert _note(page) == (
        f"{EMPTY} The newest data is of {CORPUS_DAY}: show the 30 days to {CORPUS_DAY}."
    )
    link = _newest_link(page)
    assert link is not None and urlsplit(link).path == "/dashboard"
    assert parse_qs(urlsplit(link).query) == NEWEST_PERIOD

    shown = _page(with_corpus, link)
    assert 'id="empty-period"' not in shown
    assert re.search(r'id="total-minutes">43<', shown)
    assert re.search(r'id="total-sessions">1<', shown)
    assert re.search(r'id="total-cost">0\.459858<', shown)
    assert 'href="/dashboard/rooms/weekly-standup' in shown


def test_a_period_after_or_before_the_data_offers_the_same_days(with_corpus):
    for period in ("?days=7", "?since=2020-01-01&until=2020-01-31", "?since=2025-11-27"):
        link = _newest_link(_page(with_corpus, f"/dashboard{period}"))
        assert link is not None, period
        assert parse_qs(urlsplit(link).query) == NEWEST_PERIOD, period
    page = _page(with_corpus, f"/dashboard?since={CORPUS_DAY}&until={CORPUS_DAY}")
    assert 'id="empty-period"' not in page and _newest_link(page) is None


def test_the_newest_data_is_the_tenants_own(with_corpus):
    other = _page(with_corpus, f"/dashboard?tenant={OTHER_KEY}")
    assert _note(other) == f"{EMPTY} Nothing is recorded yet for tenant {OTHER_KEY}."
    assert _newest_link(other) is None

    own = _newest_link(_page(with_corpus, f"/dashboard?tenant={KEY}"))
    assert own is not None
    assert parse_qs(urlsplit(own).query) == {**NEWEST_PERIOD, "tenant": [KEY]}
    assert re.search(r'id="total-minutes">43<', _page(with_corpus, own))


def test_a_room_without_data_in_the_period_offers_the_days_of_its_newest(with_corpus):
    page = _page(with_corpus, "/dashboard/rooms/weekly-standup")
    assert _note(page) == (
        "Nothing is known of room weekly-standup in this period. "
        f"Its newest data is of {CORPUS_DAY}: show the 30 days to {CORPUS_DAY}."
    )
    link = _newest_link(page)
    assert link is not None and urlsplit(link).path == "/dashboard/rooms/weekly-standup"
    assert parse_qs(urlsplit(link).query) == NEWEST_PERIOD
    shown = _page(with_corpus, link)
    assert 'id="empty-period"' not in shown
    assert re.search(r'id="room-minutes">43<', shown)
    assert re.search(r'id="room-cost">0\.459858<', shown)

    unknown = _page(with_corpus, "/dashboard/rooms/elsewhere")
    assert "Nothing is recorded of it at all." in _note(unknown)
    assert _newest_link(unknown) is None
