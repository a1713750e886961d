"""One room id in two tenants on the dashboard: a room reached from an event is that event's
tenant's room, and a room shown for every tenant says so and whose each row is."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from app import create_app
from plugnmeet_webhooks import runtime
from tests.integration.database.test_dashboard import ADMIN, CORPUS_DAY, login
from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET, corpus_bodies, deliver

PERIOD = f"since={CORPUS_DAY}&until={CORPUS_DAY}"


@pytest.fixture
def two_tenants(settings):
    application = create_app(replace(settings, admin_token=ADMIN))
    client = application.test_client()
    for body in corpus_bodies():  # the same session, sent by two plugNmeet servers
        assert deliver(client, body).status == 200
        assert deliver(client, body, key=OTHER_KEY, secret=OTHER_SECRET).status == 200
    login(client)
    yield client
    runtime.of(application).close()


def _minutes(page: str) -> str:
    return re.search(r'id="room-minutes">([^<]*)<', page).group(1)


def test_an_event_links_to_its_own_tenants_room(two_tenants):
    events = two_tenants.get(f"/dashboard/events?tenant={OTHER_KEY}").get_data(as_text=True)
    first = re.search(r'href="(/dashboard/events/\d+)"', events).group(1)
    page = two_tenants.get(first).get_data(as_text=True)
    link = re.search(r'href="(/dashboard/rooms/weekly-standup[^"]*)"', page).group(1)
    assert f"tenant={OTHER_KEY}" in link
    room = two_tenants.get(link.replace("&amp;", "&") + f"&{PERIOD}").get_data(as_text=True)
    assert _minutes(room) == "43"  # one session, that tenant's
    assert "exists in 2 tenants" not in room


def test_a_room_of_two_tenants_says_so_and_shows_whose_each_row_is(two_tenants):
    page = two_tenants.get(f"/dashboard/rooms/weekly-standup?{PERIOD}").get_data(as_text=True)
    assert "exists in 2 tenants" in page
    assert _minutes(page) == "86"  # both, added up, as the notice says
    for tenant in (KEY, OTHER_KEY):
        assert f"tenant={tenant}" in page  # a link to each tenant's room
        assert f"<td>{tenant}</td>" in page  # and the tenant beside each of its rows
    one = two_tenants.get(f"/dashboard/rooms/weekly-standup?{PERIOD}&tenant={KEY}")
    text = one.get_data(as_text=True)
    assert _minutes(text) == "43"
    assert "exists in 2 tenants" not in text and f"<td>{OTHER_KEY}</td>" not in text
