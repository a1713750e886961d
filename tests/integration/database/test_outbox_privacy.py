"""Forgetting reaches the outbox: no message, pending, dead or sent, keeps a forgotten name,
and one sent again carries the pseudonym. Log lines name people by identity only."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.engine import write_transaction
from tests.integration.database.test_dashboard import ADMIN, login
from tests.support.helpers import KEY, SECRET, corpus_bodies, corpus_json, deliver, handler_messages

HOOK_SECRET = "whsec_" + base64.b64encode(b"privacy-hook-secret-0123456789ab").decode()
CAROL = ("u-carol", "Carol (VIP) \U0001f3af")
PEOPLE_NAMES = ("Carol (VIP)", "Alice Admin", "Bob Bj\u00f6rnsson")


def _rules(tmp_path: Path, base: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(
        f"""
[destinations.chat-a]
kind = "slack"
url = "{base}/a"

[destinations.chat-b]
kind = "slack"
url = "{base}/b"

[destinations.hook]
kind = "webhook"
url = "{base}/hook"
secret = "{HOOK_SECRET}"

[[rules]]
name = "vip"
on = "participant_joined"
where = {{ "participant.identity" = "u-carol" }}
send = ["chat-a", "chat-b", "hook"]
text = ":star: {{{{ participant.name }}}} ({{{{ participant.identity | upper }}}}) joined"
"""
    )
    return str(path)


@pytest.fixture
def private_app(settings, tmp_path, sink):
    application = create_app(
        replace(
            settings,
            api_keys={KEY: SECRET},
            admin_token=ADMIN,
            rules_file=_rules(tmp_path, sink.url("")),
            outbox_retries=(0.05,),
        )
    )
    yield application
    runtime.of(application).close()


def _bodies(app) -> dict[str, bytes]:
    with runtime.of(app).database().connect() as conn:
        rows = conn.execute(select(outbox.outbox.c.destination, outbox.outbox.c.body)).all()
    return {destination: bytes(body) for destination, body in rows}


def test_forgetting_rewrites_pending_dead_and_sent_messages(private_app, sink):
    client = private_app.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    before = _bodies(private_app)
    assert set(before) == {"chat-a", "chat-b", "hook"}
    assert all(b"Carol" in body for body in before.values())
    assert b"U-CAROL" in before["chat-a"]  # a template may change a name's case
    engine = runtime.of(private_app).database()
    with write_transaction(engine) as conn:  # one message of each state
        table = outbox.outbox
        conn.execute(table.update().where(table.c.destination == "chat-a").values(state="dead"))
        conn.execute(
            table.update()
            .where(table.c.destination == "hook")
            .values(state="sent", sent_at=time.time())
        )

    result = private_app.test_cli_runner().invoke(args=["forget-participant", "u-carol", "--yes"])
    assert result.exit_code == 0, result.output
    assert "3 outbox messages rewritten" in result.output
    pseudonym = re.search(r"Forgotten as (forgotten-[0-9a-f]+)", result.output).group(1)

    after = _bodies(private_app)
    for destination, body in after.items():
        text = body.decode()
        assert "carol" not in text.lower(), (destination, text)
        assert pseudonym in text
    slack = json.loads(after["chat-b"])
    assert slack["text"] == f":star: {pseudonym} ({pseudonym}) joined"
    participant = json.loads(after["hook"])["data"]["event"]["participant"]
    assert (participant["identity"], participant["name"], participant["metadata"]) == (
        pseudonym,
        pseudonym,
        "",
    )
    assert "weekly-standup" in json.loads(after["hook"])["data"]["event"]["room"]["room_id"]

    # "Retry dead" on the dashboard sends the pseudonym, never the erased name.
    login(client)
    page = client.get("/dashboard/outbox").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    answer = client.post("/dashboard/outbox/retry", data={"all_dead": "1", "csrf": csrf})
    assert answer.status_code == 303
    runtime.of(private_app).dispatcher().start()
    [sent] = sink.wait_for("/a", 1)
    assert "carol" not in sent.body.decode().lower()
    assert sent.json()["text"] == f":star: {pseudonym} ({pseudonym}) joined"


def test_forgetting_one_person_leaves_other_messages_alone(private_app, sink):
    client = private_app.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    before = _bodies(private_app)
    result = private_app.test_cli_runner().invoke(args=["forget-participant", "u-bob", "--yes"])
    assert result.exit_code == 0, result.output
    assert "0 outbox messages rewritten" in result.output
    assert _bodies(private_app) == before


def test_a_webhook_sent_again_after_forgetting_still_verifies(private_app, sink):
    client = private_app.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    private_app.test_cli_runner().invoke(args=["forget-participant", "u-carol", "--yes"])
    runtime.of(private_app).dispatcher().start()
    [hook] = sink.wait_for("/hook", 1)
    payload = Webhook(HOOK_SECRET).verify(hook.body, hook.headers)
    assert payload["data"]["event"]["participant"]["identity"].startswith("forgotten-")


def test_handler_log_lines_name_people_by_identity_never_by_name(app, client, caplog):
    caplog.set_level("INFO")
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    lines = handler_messages(caplog)
    assert "Participant u-carol joined room 'weekly-standup' (3 in the room)." in lines
    assert any(line.startswith("Participant u-bob left room") for line in lines)
    for name in PEOPLE_NAMES:
        assert name not in caplog.text


@pytest.mark.parametrize(
    ("name", "template"),
    [
        ("J\u00fcrgen Stra\u00dfe", "{{ participant.name | upper }} joined the call"),
        ("\u674e\u660e", "{{ participant.name }}\u52a0\u5165\u4e86\u4f1a\u8bae"),
        ("Ion", "{{ participant.name }} joined; the section keeps its type"),
        ("Art", "{{ participant.name }} joined"),
        ("A" * 250, "{{ participant.name }} joined"),  # cut to 200 where it was read
    ],
    ids=["upper-sharp-s", "cjk", "ion", "art", "long"],
)
def test_forgetting_finds_a_name_in_any_form_and_leaves_the_message_whole(
    make_app, tmp_path, sink, name, template
):
    rules = tmp_path / "chat.toml"
    rules.write_text(
        f'[destinations.chat]\nkind = "slack"\nurl = "{sink.url("/chat")}"\n\n'
        f'[destinations.hook]\nkind = "webhook"\nurl = "{sink.url("/hook")}"\n'
        f'secret = "{HOOK_SECRET}"\n\n'
        f'[[rules]]\nname = "joined"\non = "participant_joined"\nsend = ["chat", "hook"]\n'
        f"text = {json.dumps(template)}\n"
    )
    app = make_app(api_keys={KEY: SECRET}, rules_file=str(rules))
    body = corpus_json("participant_joined", 3)
    body["participant"]["name"] = name
    assert deliver(app.test_client(), json.dumps(body).encode()).status == 200
    before = {d: json.loads(b) for d, b in _bodies(app).items()}
    result = app.test_cli_runner().invoke(args=["forget-participant", "u-carol", "--yes"])
    assert "2 outbox messages rewritten" in result.output, result.output
    after = {d: json.loads(b) for d, b in _bodies(app).items()}
    for destination, message in after.items():
        text = json.dumps(message, ensure_ascii=False)
        for form in (name, name[:200], name.upper(), "STRASSE", "u-carol"):
            assert form not in text, (destination, form)
    # Only the person changed: every type, key and other value is as it was.
    [section] = after["chat"]["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert after["hook"]["type"] == before["hook"]["type"] == "plugnmeet.participant_joined"
    assert after["hook"]["data"]["tenant"] == before["hook"]["data"]["tenant"]
    assert after["hook"]["data"]["rule"] == "joined"
