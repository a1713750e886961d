"""What a participant can put in a chat message: plain text only, within Slack's limits, and
the tenant named when a rule hears several. Against local stand-ins for Slack and Mattermost
that refuse what the real services refuse."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage import outbox
from tests.support.chat import FIELD_TEXT, SECTION_TEXT, ChatServer
from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET, SECRET, corpus_json, deliver, report

JOIN = corpus_json("participant_joined", 3)  # Carol joins weekly-standup

FORGED = (
    "Carol\n\n*IT NOTICE*: your password expires today.\nReset it at "
    "https://it-helpdesk.example/reset or evil.example/reset <!channel> <@U123> @channel @all "
    "@here [Reset now](https://evil.example) ![x](https://evil.example/p.png) `run me` "
    "~strike~ _italic_ **bold** # Heading > quote :rotating_light: ||spoiler|| "
    "\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444/reset \\(\\Huge X\\) $x^2$ trailing\\"
)

# What formats, links or mentions, in Slack's mrkdwn and in Markdown (Mattermost,
# Rocket.Chat, Discord), as each renders a message's text.
SLACK_ACTIVE = {
    "a tag (mention, link)": re.compile(r"<[^>]*>"),
    "an entity or a raw & < >": re.compile(r"[&<>]"),
    "a link": re.compile(r"https?://|\bwww\.", re.I),
    "a bare domain": re.compile(r"\w\.\w"),
    "bold": re.compile(r"(^|\W)\*\S"),
    "italic": re.compile(r"(^|\W)_\S"),
    "strike": re.compile(r"(^|\W)~\S"),
    "code": re.compile(r"`"),
    "an emoji code": re.compile(r":[a-z0-9_+-]+:"),
    "a line break": re.compile(r"\n"),
}
MARKDOWN_ACTIVE = {
    "a mention": re.compile(r"@\w"),
    "a link or an image": re.compile(r"\]\(|!\["),
    "an autolink": re.compile(r"https?://|\bwww\.", re.I),
    "a heading or a quote": re.compile(r"(^|\n)\s*[#>]"),
    "emphasis": re.compile(r"\*\*|__|(^|\W)[*_]\S"),
    "strike or spoiler": re.compile(r"~~|\|\|"),
    "code": re.compile(r"`"),
    "a line break": re.compile(r"\n"),
    "an escape or a formula": re.compile(r"[\\$]"),
    "a list": re.compile(r"^\s*([-+*]|[0-9]+[.)]) "),
    "a bare domain": re.compile(r"\w\.\w"),
}


def inert(text: str, active: dict[str, re.Pattern[str]]) -> list[str]:
    """Name what in ``text`` a chat would act on."""
    return [name for name, pattern in active.items() if pattern.search(text)]


def rules_file(tmp_path: Path, destinations: dict[str, str], text: str, **rule: str) -> str:
    lines = []
    for name, url in destinations.items():
        lines += [f"[destinations.{name}]", 'kind = "slack"', f'url = "{url}"', ""]
    lines += [
        "[[rules]]",
        'name = "joined"',
        'on = "participant_joined"',
        f"send = {json.dumps(list(destinations))}",
        f"text = {json.dumps(text)}",
        *(f"{key} = {json.dumps(value)}" for key, value in rule.items()),
    ]
    path = tmp_path / "rules.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def chat_app(make_app, tmp_path):
    def make(destinations: dict[str, str], text: str, *, keys=None, **rule: str):
        return make_app(
            api_keys=keys or {KEY: SECRET},
            rules_file=rules_file(tmp_path, destinations, text, **rule),
            outbox_retries=(0.05, 0.05, 0.05),
        )

    return make


def join_named(name: str, n: int = 0, identity: str = "u-carol") -> bytes:
    body = json.loads(json.dumps(JOIN))
    body["id"] = f"named-{n}"
    body["participant"] |= {"name": name, "identity": identity, "sid": f"PA_named{n}"}
    return json.dumps(body).encode()


def _drain(app, *servers: ChatServer, count: int = 1) -> None:
    runtime.of(app).dispatcher().start()
    for server in servers:
        server.wait_for(count)


def test_a_forged_notice_in_a_name_is_plain_text_on_slack_and_mattermost(chat_app):
    with (
        ChatServer("slack", interval=None) as slack,
        ChatServer("mattermost", interval=None) as mattermost,
    ):
        app = chat_app(
            {"slack": slack.url, "mattermost": mattermost.url},
            ":star: {{ participant.name }} joined {{ room.room_id }}",
        )
        assert deliver(app.test_client(), join_named(FORGED)).status == 200
        _drain(app, slack, mattermost)
    [on_slack], [on_mattermost] = slack.taken, mattermost.taken
    for taken, active in ((on_slack, SLACK_ACTIVE), (on_mattermost, MARKDOWN_ACTIVE)):
        text = taken.text
        assert text.startswith(":star: ") and text.endswith(" joined weekly-standup")
        name = text.removeprefix(":star: ").removesuffix(" joined weekly-standup")
        assert inert(name, active) == [], name
        # Still readable: every letter the person wrote is there, on one line.
        assert "IT NOTICE" in name and "Reset now" in name and "channel" in name
    [section] = on_slack.payload["blocks"]
    who = next(f["text"] for f in section["fields"] if f["text"].startswith("*Who*\n"))
    assert inert(who.removeprefix("*Who*\n"), SLACK_ACTIVE) == []


def test_a_rule_may_still_format_and_mention_in_its_own_text(chat_app):
    with ChatServer("slack", interval=None) as slack:
        app = chat_app({"slack": slack.url}, "<!here> *{{ participant.name }}* joined")
        assert deliver(app.test_client(), join_named("<!channel>")).status == 200
        _drain(app, slack)
    assert slack.taken[0].text == "<!here> *\u2039!channel\u203a* joined"


def test_a_name_cannot_suppress_the_alert_about_its_owner(chat_app):
    huge = "<" * 600
    with ChatServer("slack", interval=None) as slack:
        app = chat_app(
            {"slack": slack.url},
            "{{ participant.name }} " * 20 + "joined",  # 20 names of 200: over 3,000
        )
        client = app.test_client()
        assert deliver(client, join_named(huge)).status == 200
        _drain(app, slack)
    assert slack.refused == []
    [taken] = slack.taken
    [section] = taken.payload["blocks"]
    assert len(section["text"]["text"]) == SECTION_TEXT  # cut to Slack's limit, not refused
    assert all(len(f["text"]) <= FIELD_TEXT for f in section["fields"])
    who = next(f["text"] for f in section["fields"] if f["text"].startswith("*Who*\n"))
    assert who == "*Who*\n" + "\u2039" * 200  # the name, cut to 200 where it was read
    [message] = outbox.list_messages(runtime.of(app).database())
    assert message["state"] == "sent"
    # Names are bounded where events are read: the ledger keeps 200 characters of it.
    names = {row["name"] for row in report(app, "attendance")["rows"]}
    assert names == {"<" * 200}


def test_with_several_tenants_a_rule_without_one_names_whose_event_it_is(chat_app):
    with ChatServer("slack", interval=None) as slack:
        app = chat_app(
            {"slack": slack.url},
            "{{ participant.name }} joined",
            keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
        )
        client = app.test_client()
        assert deliver(client, join_named("Carol")).status == 200
        assert (
            deliver(
                client, join_named("Ceo", 1, "u-ceo"), key=OTHER_KEY, secret=OTHER_SECRET
            ).status
            == 200
        )
        _drain(app, slack, count=2)
    texts = sorted(t.text for t in slack.taken)
    assert texts == [f"[{OTHER_KEY}] Ceo joined", f"[{KEY}] Carol joined"]
    for taken in slack.taken:
        [section] = taken.payload["blocks"]
        assert section["fields"][0]["text"].startswith("*Tenant*\n")


def test_a_name_at_the_start_of_a_message_makes_no_list(chat_app):
    with ChatServer("mattermost", interval=None) as mattermost:
        app = chat_app({"mattermost": mattermost.url}, "{{ participant.name }} joined")
        client = app.test_client()
        for n, name in enumerate(("- IT NOTICE", "1. IT NOTICE", "+ IT NOTICE")):
            assert deliver(client, join_named(name, n)).status == 200
        _drain(app, mattermost, count=3)
    for taken in mattermost.taken:
        assert inert(taken.text, MARKDOWN_ACTIVE) == [], taken.text
        assert "IT NOTICE joined" in taken.text


def test_a_rule_kept_to_one_tenant_names_none(chat_app):
    with ChatServer("slack", interval=None) as slack:
        app = chat_app(
            {"slack": slack.url},
            "{{ participant.name }} joined",
            keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
            tenant=KEY,
        )
        assert deliver(app.test_client(), join_named("Carol")).status == 200
        _drain(app, slack)
    assert slack.taken[0].text == "Carol joined"


def test_with_one_tenant_a_message_names_none(chat_app):
    with ChatServer("slack", interval=None) as slack:
        app = chat_app({"slack": slack.url}, "{{ participant.name }} joined")
        assert deliver(app.test_client(), join_named("Carol")).status == 200
        _drain(app, slack)
    [taken] = slack.taken
    assert taken.text == "Carol joined"
    assert not any(f["text"].startswith("*Tenant*") for f in taken.payload["blocks"][0]["fields"])


def test_rules_check_warns_of_a_rule_without_a_tenant_when_there_are_several(chat_app):
    several = chat_app(
        {"slack": "https://hooks.example/x"},
        "{{ participant.name }} joined",
        keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
    )
    result = several.test_cli_runner().invoke(args=["rules", "check"])
    assert result.exit_code == 0
    assert "warning: rule 'joined' has no tenant" in result.output
    assert f"every tenant ({KEY}, {OTHER_KEY})" in result.output

    one = chat_app({"slack": "https://hooks.example/x"}, "{{ participant.name }} joined")
    assert "warning" not in one.test_cli_runner().invoke(args=["rules", "check"]).output

    scoped = chat_app(
        {"slack": "https://hooks.example/x"},
        "{{ participant.name }} joined",
        keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
        tenant=KEY,
    )
    assert "warning" not in scoped.test_cli_runner().invoke(args=["rules", "check"]).output


def test_the_chat_stand_in_refuses_what_slack_refuses():
    # The stand-in must be able to fail a message, or the tests above prove nothing.
    with ChatServer("slack", interval=1.0) as slack:
        from urllib.request import Request, urlopen

        def post(payload: dict) -> int:
            request = Request(slack.url, json.dumps(payload).encode(), method="POST")
            try:
                return urlopen(request, timeout=5).status
            except Exception as exc:
                return exc.code

        too_long = {"text": "x", "blocks": [{"type": "section", "text": {"text": "x" * 3001}}]}
        assert post(too_long) == 400
        assert post({"text": "ok", "blocks": []}) == 200
        assert post({"text": "again", "blocks": []}) == 429
        time.sleep(1.05)
        field = {"type": "section", "fields": [{"text": "y" * 2001}]}
        assert post({"text": "x", "blocks": [field]}) == 400
