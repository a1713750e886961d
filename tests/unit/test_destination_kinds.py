"""Destination kinds plug in: a kind registered on a copy of the registry is read from a
rules file with its own settings, and its body, headers and URL are what is sent."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
import urllib3
from sqlalchemy import create_engine

from app import create_app
from config import ConfigError, Settings
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.normalize import normalize
from plugnmeet_webhooks.storage.events import Receipt
from plugnmeet_webhooks.storage.outbox import Claimed
from plugnmeet_webhooks.workflows.dispatcher import USER_AGENT, send
from plugnmeet_webhooks.workflows.kinds import Kinds, registry
from plugnmeet_webhooks.workflows.messages import Workflows
from plugnmeet_webhooks.workflows.reader import env_value
from plugnmeet_webhooks.workflows.rules_file import parse_rules
from tests.support.helpers import KEY, SAMPLES_DIR, SECRET
from tests.support.sink import Sink

API_KEY = "mk_live_4b1d9e7c2a"
ENV = {"METER_API_KEY": API_KEY}
METER_PATH = "/v1/meter_events"


@dataclass(frozen=True)
class MeterSettings:
    event_name: str
    api_key: str = field(repr=False)


class MeterKind:
    """A kind as a billing meter would be: form-encoded, the message id in the body, its
    own authorisation header, a path of its own after the URL."""

    name = "meter"
    title = "a meter"
    rule_keys = ("text",)
    secret_keys = ("api_key",)
    reads_customers = False
    content_type = "application/x-www-form-urlencoded"

    def settings(self, read, where, env):
        event_name = read.get("event_name", str, required=True, hint='"minutes"')
        api_key = read.get("api_key", str, required=True, hint='"env:NAME"')
        return MeterSettings(event_name, env_value(api_key, f"{where}.api_key", env))

    def body(self, rule, destination, facts, message_id, several_tenants):
        return urlencode(
            {
                "event_name": destination.settings.event_name,
                "identifier": message_id,
                "payload[tenant]": facts.tenant,
                "payload[value]": rule.text.render(facts.context),
            }
        ).encode()

    def headers(self, destination, message_id, body, now):
        return {"Authorization": f"Bearer {destination.settings.api_key}"}

    def url(self, destination):
        return destination.url + METER_PATH


def meter_rules(url: str) -> str:
    return (
        f'[destinations.billing]\nkind = "meter"\nurl = "{url}"\n'
        'event_name = "minutes"\napi_key = "env:METER_API_KEY"\n'
        '[[rules]]\nname = "billed"\non = "session_ended"\nsend = ["billing"]\n'
        'text = "{{ room.room_id }}"\n'
    )


def with_meter() -> tuple[Kinds, MeterKind]:
    kinds = registry.copy()
    meter = MeterKind()
    kinds.register(meter)
    return kinds, meter


def test_a_registered_kind_is_read_rendered_and_sent_as_it_says():
    kinds, meter = with_meter()
    payload = json.loads((SAMPLES_DIR / "session_ended.json").read_text())
    event = normalize(payload)
    with Sink() as sink:
        rules = parse_rules(meter_rules(sink.url("/api")), ENV, kinds)
        destination = rules.destinations["billing"]
        assert destination.kind is meter
        assert destination.settings == MeterSettings("minutes", API_KEY)
        assert destination.secret is None
        assert repr(destination) == (
            "Destination(name='billing', kind='meter', settings={'event_name': 'minutes'})"
        )
        receipt = Receipt("evt-1", time.time(), "acme")
        with create_engine("sqlite://").connect() as conn:
            [message] = Workflows(rules).messages(conn, event, receipt)
        claimed = Claimed(1, message.message_id, "billing", message.body, 1, 0, 0.0, None, "t")
        assert send(urllib3.PoolManager(), destination, claimed).sent
        [got] = sink.wait_for("/api" + METER_PATH, 1)
    assert (
        message.body
        == urlencode(
            {
                "event_name": "minutes",
                "identifier": message.message_id,
                "payload[tenant]": "acme",
                "payload[value]": event.room.room_id,
            }
        ).encode()
    )
    assert got.body == message.body
    assert got.headers["content-type"] == "application/x-www-form-urlencoded"
    assert got.headers["authorization"] == f"Bearer {API_KEY}"
    assert got.headers["idempotency-key"] == message.message_id
    assert got.headers["user-agent"] == USER_AGENT
    assert not any(name.startswith("webhook-") for name in got.headers)


def test_the_default_registry_is_untouched_by_a_copys_kinds():
    with_meter()
    assert registry.names == ("slack", "webhook", "stripe-meter", "cloudevents")
    assert registry.get("meter") is None
    with pytest.raises(ConfigError) as caught:
        parse_rules(meter_rules("https://meter.test"), ENV)
    assert str(caught.value) == (
        """destinations.billing: kind is 'meter'; use one of "slack", "webhook", """
        '"stripe-meter", "cloudevents".'
    )


def test_a_kind_name_is_registered_once_unless_replaced():
    kinds, meter = with_meter()
    with pytest.raises(ValueError, match="destination kind 'meter' is registered already"):
        kinds.register(MeterKind())
    assert kinds.get("meter") is meter
    other = MeterKind()
    assert kinds.register(other, replace=True) is other
    assert kinds.get("meter") is other
    assert kinds.names == ("slack", "webhook", "stripe-meter", "cloudevents", "meter")


def test_an_unknown_kind_is_told_the_registered_names():
    kinds, _ = with_meter()
    with pytest.raises(ConfigError) as caught:
        parse_rules('[destinations.x]\nkind = "teams"\nurl = "https://x.test"\n', ENV, kinds)
    assert str(caught.value) == (
        """destinations.x: kind is 'teams'; use one of "slack", "webhook", """
        '"stripe-meter", "cloudevents", "meter".'
    )
    with pytest.raises(ConfigError) as caught:
        parse_rules('[destinations.x]\nurl = "https://x.test"\n', ENV, kinds)
    assert str(caught.value) == (
        """destinations.x has no kind; add kind = one of "slack", "webhook", """
        '"stripe-meter", "cloudevents", "meter".'
    )


@pytest.mark.parametrize(
    ("text", "sentence"),
    [
        (
            meter_rules("https://meter.test").replace('event_name = "minutes"\n', ""),
            'destinations.billing has no event_name; add event_name = "minutes".',
        ),
        (
            meter_rules("https://meter.test").replace("env:METER_API_KEY", "env:NOT_SET"),
            "destinations.billing.api_key reads the environment variable NOT_SET, which is "
            "not set.",
        ),
        (
            meter_rules("https://meter.test").replace("url =", "colour = 1\nurl ="),
            "destinations.billing has the unknown key 'colour'; "
            "the keys are api_key, event_name, kind, url.",
        ),
        (
            meter_rules("https://meter.test").replace('text = "{{ room.room_id }}"\n', ""),
            """rule 'billed' sends to a meter but has no text; add text = "...".""",
        ),
    ],
)
def test_a_kinds_own_keys_are_checked_in_one_sentence(text, sentence):
    kinds, _ = with_meter()
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, ENV, kinds)
    assert str(caught.value) == sentence
    assert API_KEY not in str(caught.value)


def test_the_runtime_has_its_own_kinds_and_rules_check_uses_them(tmp_path, monkeypatch):
    monkeypatch.setenv("METER_API_KEY", API_KEY)
    path = tmp_path / "rules.toml"
    path.write_text(meter_rules("https://meter.test"))
    settings = Settings(api_keys={KEY: SECRET}, database_url=f"sqlite:///{tmp_path / 'e.db'}")
    apps = [create_app(settings), create_app(settings)]
    try:
        with_meter_app, plain_app = (runtime.of(app) for app in apps)
        assert with_meter_app.kinds is not registry
        assert with_meter_app.kinds is not plain_app.kinds
        assert with_meter_app.kinds.names == registry.names
        with_meter_app.kinds.register(MeterKind())
        checked = apps[0].test_cli_runner().invoke(args=["rules", "check", str(path)])
        assert checked.exit_code == 0, checked.output
        assert "1 rules, 1 destinations, all correct." in checked.output
        refused = apps[1].test_cli_runner().invoke(args=["rules", "check", str(path)])
        assert refused.exit_code != 0
        assert (
            """kind is 'meter'; use one of "slack", "webhook", "stripe-meter", "cloudevents"."""
            in refused.output
        )
        assert registry.names == ("slack", "webhook", "stripe-meter", "cloudevents")
    finally:
        for app in apps:
            runtime.of(app).close()
