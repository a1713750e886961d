"""Workflows: the example rules on the corpus, the outbox, retries, and what is never sent."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage import outbox
from tests.support.helpers import CORPUS, KEY, ROOT, corpus, corpus_json, corpus_path, deliver
from tests.support.helpers import SECRET as API_SECRET
from tests.support.sink import Answer, Sink

SECRET = "whsec_" + base64.b64encode(b"billing-app-secret-0123456789abc").decode()
EXAMPLE = (ROOT / "samples" / "rules.toml").read_text()
EXPECTED_SLACK = [
    ":star: Carol (VIP) \U0001f3af joined weekly-standup",
    "weekly-standup ended: 43 billable minutes",
    "AI cost of weekly-standup today: 0.443117 (budget 0.25)",
]


def example_rules(tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The README's example file, with Slack and the billing app at ``base``."""
    monkeypatch.setenv("OPS_SLACK_URL", f"{base}/slack")
    monkeypatch.setenv("BILLING_WEBHOOK_SECRET", SECRET)
    path = tmp_path / "rules.toml"
    path.write_text(EXAMPLE.replace("https://billing.internal/hooks/plugnmeet", f"{base}/billing"))
    return str(path)


@pytest.fixture
def workflow_app(settings, tmp_path, sink, monkeypatch):
    rules = example_rules(tmp_path, sink.url(""), monkeypatch)
    # One plugNmeet server, as in the README's example: messages name no tenant.
    application = create_app(
        replace(
            settings,
            api_keys={KEY: API_SECRET},
            rules_file=rules,
            outbox_retries=(0.05, 0.05, 0.05),
            outbox_lease=5,
        )
    )
    yield application
    runtime.of(application).close()


def _drain(app, sink_count_paths: dict[str, int], sink: Sink) -> None:
    """Run the app's dispatcher until the sink has what the test waits for."""
    rt = runtime.of(app)
    dispatcher = rt.dispatcher().start()
    for path, count in sink_count_paths.items():
        sink.wait_for(path, count)
    _settled(rt)
    assert dispatcher


def _settled(rt, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = outbox.counts(rt.engine)[0]
        if states["sending"] == 0 and states["pending"] == 0:
            return
        time.sleep(0.02)


def _messages(app, **filters) -> list[dict]:
    return outbox.list_messages(runtime.of(app).database(), limit=1000, **filters)


def test_the_example_rules_on_the_corpus_send_exactly_the_expected_messages(workflow_app, sink):
    client = workflow_app.test_client()
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    # Every message is queued with its event, before any is sent.
    queued = _messages(workflow_app)
    assert sorted((m["rule"], m["destination"]) for m in queued) == [
        ("ai-budget", "ops-slack"),
        ("meeting-billed", "billing-app"),
        ("meeting-billed", "ops-slack"),
        ("vip-joined", "ops-slack"),
    ]
    assert {m["state"] for m in queued} == {"pending"}

    _drain(workflow_app, {"/slack": 3, "/billing": 1}, sink)

    slack = sink.at("/slack")
    assert sorted(r.json()["text"] for r in slack) == sorted(EXPECTED_SLACK)
    for request in slack:
        [section] = request.json()["blocks"]
        assert section["type"] == "section"
        assert section["fields"][0] == {"type": "mrkdwn", "text": "*Room*\nweekly-standup"}
        assert request.headers["idempotency-key"].startswith("msg_")
    [billing] = sink.at("/billing")
    payload = Webhook(SECRET).verify(billing.body, billing.headers)
    assert payload["type"] == "plugnmeet.session_ended"
    assert payload["data"]["session"]["billable_minutes"] == 43
    assert payload["data"]["event"]["room"]["room_id"] == "weekly-standup"
    assert billing.headers["webhook-id"] == next(
        m["message_id"] for m in queued if m["destination"] == "billing-app"
    )
    assert {m["state"] for m in _messages(workflow_app)} == {"sent"}

    # Redeliveries change nothing: no message is queued or sent twice.
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).json == {"status": "duplicate"}
    assert len(_messages(workflow_app)) == 4


def test_a_webhook_signed_with_another_secret_does_not_verify(workflow_app, sink):
    assert deliver(workflow_app.test_client(), corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 1}, sink)
    [billing] = sink.at("/billing")
    other = Webhook("whsec_" + base64.b64encode(b"another-secret-entirely-0123456").decode())
    with pytest.raises(Exception, match="signature"):
        other.verify(billing.body, billing.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(billing.body.replace(b"43", b"44"), billing.headers)


def test_two_503s_then_a_200_arrive_with_the_same_idempotency_key(workflow_app, sink):
    sink.script("/billing", Answer(503), Answer(503), then=Answer(200))
    assert deliver(workflow_app.test_client(), corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 3}, sink)
    attempts = sink.at("/billing")
    assert len(attempts) == 3
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    for attempt in attempts:  # each attempt is signed afresh, each signature verifies
        Webhook(SECRET).verify(attempt.body, attempt.headers)
    billed = next(m for m in _messages(workflow_app) if m["destination"] == "billing-app")
    assert (billed["state"], billed["attempts"], billed["last_status"]) == ("sent", 3, 200)


def test_a_429_waits_as_long_as_retry_after_says(workflow_app, sink):
    sink.script("/billing", Answer(429, {"Retry-After": "30"}))
    assert deliver(workflow_app.test_client(), corpus("session_ended")).status == 200
    rt = runtime.of(workflow_app)
    rt.dispatcher().start()
    sink.wait_for("/billing", 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [billed] = [m for m in _messages(workflow_app) if m["destination"] == "billing-app"]
        if billed["state"] == "pending" and billed["attempts"] == 1:
            break
        time.sleep(0.02)
    first = sink.at("/billing")[0].at
    assert billed["last_status"] == 429 and billed["last_error"] == "HTTP 429"
    # The schedule says 0.05 s; the destination said 30 s, and it is what counts.
    assert billed["next_attempt_at"] - first >= 29
    time.sleep(0.3)
    assert len(sink.at("/billing")) == 1


def test_a_400_is_dead_after_one_attempt(workflow_app, sink):
    sink.script("/billing", then=Answer(400))
    assert deliver(workflow_app.test_client(), corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 1, "/slack": 1}, sink)
    time.sleep(0.2)
    assert len(sink.at("/billing")) == 1
    [billed] = [m for m in _messages(workflow_app) if m["destination"] == "billing-app"]
    assert (billed["state"], billed["attempts"], billed["last_error"]) == ("dead", 1, "HTTP 400")


def test_a_message_out_of_attempts_is_dead(workflow_app, sink):
    sink.script("/billing", then=Answer(502))
    assert deliver(workflow_app.test_client(), corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 4}, sink)  # the first attempt and three retries
    time.sleep(0.3)
    assert len(sink.at("/billing")) == 4
    [billed] = [m for m in _messages(workflow_app) if m["destination"] == "billing-app"]
    assert (billed["state"], billed["attempts"]) == ("dead", 4)


def test_a_destination_down_for_the_whole_burst_gets_everything_when_back(
    settings, tmp_path, monkeypatch
):
    from tests.support.gunicorn_server import free_port

    port = free_port()  # nothing listens there yet
    rules = example_rules(tmp_path, f"http://127.0.0.1:{port}", monkeypatch)
    app = create_app(replace(settings, rules_file=rules, outbox_retries=(0.1,) * 20))
    rt = runtime.of(app)
    try:
        client = app.test_client()
        for n in range(20):
            vip = corpus_json("participant_joined", 3)
            vip["id"] = f"vip-{n}"
            assert deliver(client, json.dumps(vip).encode()).status == 200
        rt.dispatcher().start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until every message has been tried once
            messages = _messages(app)
            if all(m["attempts"] >= 1 and m["state"] == "pending" for m in messages):
                break
            time.sleep(0.05)
        assert len(messages) == 20 and {m["state"] for m in messages} <= {"pending", "sending"}
        assert all(m["last_error"] == "connection refused or unreachable" for m in messages)
        with Sink(port) as down:  # it comes back
            down.wait_for("/slack", 20)
            _settled(rt)
            assert len({r.headers["idempotency-key"] for r in down.at("/slack")}) == 20
        assert {m["state"] for m in _messages(app)} == {"sent"}
    finally:
        rt.close()


def test_replay_sends_nothing_unless_told_and_never_twice(workflow_app, sink):
    client, runner = workflow_app.test_client(), workflow_app.test_cli_runner()
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    with runtime.of(workflow_app).database().begin() as conn:
        conn.execute(outbox.outbox.delete())

    assert runner.invoke(args=["replay"]).exit_code == 0
    assert _messages(workflow_app) == []

    result = runner.invoke(args=["replay", "--notify"])
    assert result.exit_code == 0, result.output
    assert len(_messages(workflow_app)) == 4
    runner.invoke(args=["replay", "--notify"])
    assert len(_messages(workflow_app)) == 4, "a message already queued is not queued again"


def test_backfill_applies_a_rule_to_past_events(workflow_app, sink):
    client, runner = workflow_app.test_client(), workflow_app.test_cli_runner()
    for body in CORPUS:
        assert deliver(client, body.read_bytes()).status == 200
    with runtime.of(workflow_app).database().begin() as conn:
        conn.execute(outbox.outbox.delete())

    result = runner.invoke(args=["rules", "backfill", "vip-joined", "--since", "2000-01-01"])

    assert result.exit_code == 0, result.output
    assert "Backfilled rule vip-joined over 3 events: 1 messages queued." in result.output
    assert [m["rule"] for m in _messages(workflow_app)] == ["vip-joined"]
    unknown = runner.invoke(args=["rules", "backfill", "nope", "--since", "2000-01-01"])
    assert unknown.exit_code == 2 and "no rule is named 'nope'" in unknown.output


def test_rules_test_shows_the_exact_messages_and_changes_nothing(workflow_app, sink):
    runner = workflow_app.test_cli_runner()
    result = runner.invoke(args=["rules", "test", str(corpus_path("participant_joined", 3))])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rule vip-joined -> ops-slack  (msg_")
    assert ":star: Carol (VIP) \U0001f3af joined weekly-standup" in result.output
    assert _messages(workflow_app) == []
    with runtime.of(workflow_app).database().connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 0
    alice = corpus_path("participant_joined")  # not a VIP
    quiet = runner.invoke(args=["rules", "test", str(alice)])
    assert "No rule sends anything for this participant_joined event." in quiet.output
    assert sink.received == []


def test_outbox_commands_never_show_a_url_or_a_secret(workflow_app, sink):
    sink.script("/billing", then=Answer(400))
    client, runner = workflow_app.test_client(), workflow_app.test_cli_runner()
    assert deliver(client, corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 1, "/slack": 1}, sink)

    for args in (["outbox", "list"], ["outbox", "list", "--format", "json"]):
        shown = runner.invoke(args=args).output
        assert "billing-app" in shown and "dead" in shown
        assert str(sink.port) not in shown and "whsec_" not in shown and "127.0.0.1" not in shown
    dead = runner.invoke(args=["outbox", "list", "--state", "dead"]).output
    assert len(dead.splitlines()) == 2

    sink.script("/billing", then=Answer(200))
    assert (
        "1 messages are pending again." in runner.invoke(args=["outbox", "retry", "--dead"]).output
    )
    sink.wait_for("/billing", 2)
    _settled(runtime.of(workflow_app))
    assert {m["state"] for m in _messages(workflow_app)} == {"sent"}
    purged = runner.invoke(args=["outbox", "purge", "--sent-before", "2999-01-01"])
    assert "Deleted 2 messages" in purged.output
    assert _messages(workflow_app) == []


def test_sender_text_cannot_mention_a_slack_channel(workflow_app, sink):
    vip = corpus_json("participant_joined", 3)
    vip["participant"]["name"] = "<!channel> & <https://evil|click>"
    assert deliver(workflow_app.test_client(), json.dumps(vip).encode()).status == 200
    _drain(workflow_app, {"/slack": 1}, sink)
    text = sink.at("/slack")[0].json()["text"]
    # No < & | left to open a Slack tag; look-alikes show the name as it was written.
    name = "\u2039!channel\u203a \uff06 \u2039https\u2236//evil\u2223click\u203a"
    assert text == f":star: {name} joined weekly-standup"


def test_metrics_show_the_outbox_and_readiness_ignores_destinations(workflow_app, sink):
    sink.script("/billing", then=Answer(503))
    client = workflow_app.test_client()
    assert deliver(client, corpus("session_ended")).status == 200
    _drain(workflow_app, {"/billing": 2, "/slack": 1}, sink)
    page = client.get("/metrics").get_data(as_text=True)
    assert 'pnm_outbox_messages{state="sent"} 1.0' in page
    assert 'pnm_outbox_attempts_total{destination="ops-slack",outcome="sent"} 1.0' in page
    assert 'pnm_outbox_attempts_total{destination="billing-app",outcome="retry"}' in page
    assert "pnm_outbox_oldest_pending_seconds" in page
    assert client.get("/readyz").json == {"status": "ready"}


def test_a_rule_reads_every_field_of_the_event_and_the_ledgers_names(app_runtime):
    import dataclasses

    from plugnmeet_webhooks.normalize import Event, Participant, normalize
    from plugnmeet_webhooks.storage.events import Receipt
    from plugnmeet_webhooks.workflows.context import CONTEXT, LEDGER_PARTS, check_path
    from plugnmeet_webhooks.workflows.messages import Facts

    event_fields = [f.name for f in dataclasses.fields(Event)]
    assert list(CONTEXT) == [*event_fields, *LEDGER_PARTS]
    # What is checked when the file is read is what is there when a message is made.
    event = normalize(corpus_json("participant_joined"))
    with app_runtime.database().connect() as conn:
        facts = Facts(conn, event, Receipt(event.id, 1.0, "tenant-a"))
        assert list(facts.context) == list(CONTEXT)
        assert facts.resolve("participant.identity") == event.participant.identity
        assert facts.resolve("tenant") == "tenant-a"
    for field in dataclasses.fields(Participant):  # a new field is readable at once
        assert check_path(f"participant.{field.name}") is None
