"""Usage to billing systems through the outbox: Stripe meter events and CloudEvents, checked
by local servers as the vendors document them; retries keep their identifier, a 4xx is
dead after one attempt, and a room no customer owns sends no meter event."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any
from urllib.parse import parse_qs

import pytest

from config import ConfigError
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage import outbox
from tests.support.billing_systems import METER_TOKEN, STRIPE_KEY, CloudEventsIngest, StripeMeter
from tests.support.helpers import CORPUS, ROOT, deliver

CORPUS_START = 1764171000
TIMES = re.compile(rb'"(created_at|creation_time|joined_at)":"(\d+)"')
BILLING = (ROOT / "samples" / "billing.toml").read_text()


def rules_text(stripe_url: str, meter_url: str, event_name: str = "plugnmeet_minutes") -> str:
    """The issue's example rules file, pointed at the local servers."""
    return f"""
[destinations.stripe]
kind = "stripe-meter"
url = "{stripe_url}"                     # tests point it at a local server
secret = "env:STRIPE_API_KEY"           # sent as Authorization: Bearer
event_name = "{event_name}"

[destinations.meter]
kind = "cloudevents"
url = "{meter_url}/api/v1/events"
secret = "env:OPENMETER_TOKEN"          # optional Bearer
source = "plugnmeet-webhooks"
type = "plugnmeet.session.minutes"

[[rules]]
name = "meter-minutes"
on = "session_ended"
send = ["stripe", "meter"]
value = "{{{{ session.billable_minutes }}}}"   # the meter value; CloudEvents data carries it too
"""


@pytest.fixture
def usage_app(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("OPENMETER_TOKEN", METER_TOKEN)

    def make(stripe: StripeMeter, meter: CloudEventsIngest, **rules: Any) -> Any:
        (tmp_path / "rules.toml").write_text(rules_text(stripe.url, meter.url, **rules))
        (tmp_path / "billing.toml").write_text(BILLING)
        return make_app(
            rules_file=str(tmp_path / "rules.toml"),
            billing_file=str(tmp_path / "billing.toml"),
            outbox_retries=(0.05, 0.05, 0.05),
        )

    return make


def deliver_session(client: Any, *, room_id: str = "weekly-standup", ago: int = 3600) -> int:
    """Deliver the corpus session, moved to have ended about ``ago`` seconds ago (Stripe
    takes meter events of the past 35 days only); return its session_ended's time."""
    shift = int(time.time()) - ago - CORPUS_START - 2565
    ended = 0
    for path in CORPUS:
        body = TIMES.sub(lambda m: b'"%s":"%d"' % (m[1], int(m[2]) + shift), path.read_bytes())
        if room_id != "weekly-standup":
            body = body.replace(b'"room_id":"weekly-standup"', f'"room_id":"{room_id}"'.encode())
            body = body.replace(b"RM_hK3v9QpZt2Lx", f"RM_{room_id}".encode())
            body = re.sub(rb'"id":"([^"]+)"', lambda m: m[0][:-1] + room_id.encode() + b'"', body)
        if path.name.endswith("session_ended.json"):
            ended = int(json.loads(body)["created_at"])
        assert deliver(client, body).status == 200
    return ended


def _messages(app: Any) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in outbox.list_messages(runtime.of(app).database())}


def _settled(app: Any, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _messages(app)
        if found and all(m["state"] in ("sent", "dead") for m in found.values()):
            return found
        time.sleep(0.05)
    raise AssertionError(f"not settled: {_messages(app)}")


def test_a_session_end_reaches_stripe_and_a_cloudevents_meter(usage_app):
    with StripeMeter() as stripe, CloudEventsIngest() as meter:
        app = usage_app(stripe, meter)
        ended = deliver_session(app.test_client())
        runtime.of(app).dispatcher().start()
        messages = _settled(app)
    assert {name: m["state"] for name, m in messages.items()} == {"stripe": "sent", "meter": "sent"}
    assert [a.problem for a in stripe.arrived + meter.arrived] == [None, None]

    [sent] = stripe.arrived
    assert sent.path == "/v1/billing/meter_events"
    assert sent.headers["authorization"] == f"Bearer {STRIPE_KEY}"
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.headers["idempotency-key"] == messages["stripe"]["message_id"]
    assert stripe.events == [
        {
            "event_name": "plugnmeet_minutes",
            "payload[stripe_customer_id]": "cus_123",
            "payload[value]": "43",
            "timestamp": str(ended),
            "identifier": messages["stripe"]["message_id"],
        }
    ]

    [event] = meter.events
    assert meter.arrived[0].headers["content-type"].startswith("application/cloudevents+json")
    assert meter.arrived[0].headers["authorization"] == f"Bearer {METER_TOKEN}"
    assert event["id"] == messages["meter"]["message_id"]
    assert (event["specversion"], event["source"], event["type"], event["subject"]) == (
        "1.0", "plugnmeet-webhooks", "plugnmeet.session.minutes", "acme",
    )  # fmt: skip
    assert event["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ended))
    assert event["data"] == {
        "value": 43,
        "event": "session_ended",
        "tenant": "plugnmeet",
        "room_id": "weekly-standup",
        "room_sid": "RM_hK3v9QpZt2Lx",
        "customer": "acme",
        "rule": "meter-minutes",
    }


def test_retries_keep_the_same_identifier_and_id_and_count_once(usage_app):
    with StripeMeter() as stripe, CloudEventsIngest() as meter:
        stripe.script.extend([503, 500])
        meter.script.extend([502])
        app = usage_app(stripe, meter)
        deliver_session(app.test_client())
        runtime.of(app).dispatcher().start()
        messages = _settled(app)
    assert (messages["stripe"]["state"], messages["stripe"]["attempts"]) == ("sent", 3)
    assert (messages["meter"]["state"], messages["meter"]["attempts"]) == ("sent", 2)
    identifiers = {parse_qs(a.body.decode())["identifier"][0] for a in stripe.arrived}
    keys = {a.headers["idempotency-key"] for a in stripe.arrived}
    assert identifiers == keys == {messages["stripe"]["message_id"]}
    assert [a.status for a in stripe.arrived] == [503, 500, 200]
    assert len(stripe.events) == 1
    assert {json.loads(a.body)["id"] for a in meter.arrived} == {messages["meter"]["message_id"]}
    assert len({a.body for a in meter.arrived}) == 1  # the same bytes each time
    assert len(meter.events) == 1


def test_a_4xx_is_dead_after_one_attempt(usage_app, monkeypatch):
    with (
        StripeMeter(event_name="another_meter") as stripe,
        CloudEventsIngest(token="other") as meter,
    ):
        app = usage_app(stripe, meter)
        deliver_session(app.test_client())
        runtime.of(app).dispatcher().start()
        messages = _settled(app)
    for name in ("stripe", "meter"):
        assert (messages[name]["state"], messages[name]["attempts"]) == ("dead", 1)
        assert messages[name]["last_error"] == "HTTP 400"
    assert len(stripe.arrived) == len(meter.arrived) == 1
    assert "no meter has event_name 'plugnmeet_minutes'" in stripe.arrived[0].problem
    assert stripe.events == [] and meter.events == []


def test_a_room_without_a_customer_sends_no_meter_event(usage_app, caplog):
    with StripeMeter() as stripe, CloudEventsIngest() as meter:
        app = usage_app(stripe, meter)
        with caplog.at_level(logging.INFO):
            deliver_session(app.test_client(), room_id="lobby")
        runtime.of(app).dispatcher().start()
        messages = _settled(app)
    assert list(messages) == ["meter"]  # nothing queued for Stripe
    assert stripe.arrived == []
    [event] = meter.events
    assert (event["subject"], event["data"]["customer"], event["data"]["value"]) == (
        "lobby",
        None,
        43,
    )
    assert "rule meter-minutes sends nothing to stripe for session_ended event " in caplog.text
    assert "room 'lobby' belongs to no customer with a stripe_customer" in caplog.text
    assert STRIPE_KEY not in caplog.text and METER_TOKEN not in caplog.text


def test_a_value_that_is_not_a_number_queues_nothing_and_says_so(
    make_app, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("OPENMETER_TOKEN", METER_TOKEN)
    text = rules_text("http://127.0.0.1:9", "http://127.0.0.1:9").replace(
        "{{ session.billable_minutes }}", "{{ room.room_id }}"
    )
    (tmp_path / "rules.toml").write_text(text)
    (tmp_path / "billing.toml").write_text(BILLING)
    app = make_app(
        rules_file=str(tmp_path / "rules.toml"),
        billing_file=str(tmp_path / "billing.toml"),
        dispatcher=False,
    )
    with caplog.at_level(logging.INFO):
        deliver_session(app.test_client())
    assert _messages(app) == {}
    assert "rule meter-minutes could not render its message for session_ended" in caplog.text
    assert "the value is 'weekly-standup', not a number" in caplog.text


def test_templates_read_the_customer_of_the_room(make_app, tmp_path):
    from tests.support.sink import Sink

    with Sink() as sink:
        (tmp_path / "rules.toml").write_text(
            f"""
[destinations.hook]
kind = "webhook"
url = "{sink.url("/hook")}"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[[rules]]
name = "customer-ended"
on = "session_ended"
send = ["hook"]
where = {{ "customer.stripe_customer" = "cus_123" }}
text = "{{{{ customer.name }}}} ({{{{ customer.key }}}}, {{{{ customer.plan }}}}) ended"
"""
        )
        (tmp_path / "billing.toml").write_text(BILLING)
        app = make_app(
            rules_file=str(tmp_path / "rules.toml"),
            billing_file=str(tmp_path / "billing.toml"),
            outbox_retries=(0.05,),
        )
        deliver_session(app.test_client())
        deliver_session(app.test_client(), room_id="product-launch")  # globex: no stripe id
        runtime.of(app).dispatcher().start()
        messages = _settled(app)
    assert list(messages) == ["hook"]
    [received] = sink.received
    assert received.json()["data"]["text"] == "ACME Corp (acme, standard) ended"


def test_a_stripe_meter_without_a_billing_file_stops_the_start(make_app, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_KEY)
    monkeypatch.setenv("OPENMETER_TOKEN", METER_TOKEN)
    (tmp_path / "rules.toml").write_text(rules_text("https://api.stripe.test", "https://m.test"))
    with pytest.raises(ConfigError) as caught:
        make_app(rules_file=str(tmp_path / "rules.toml"))
    assert caught.value.message == (
        "destinations.stripe (stripe-meter) sends usage for the customer of each room, which "
        "the billing file names; set PNM_BILLING_FILE (see the README's Billing)."
    )
