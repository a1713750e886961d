"""Rules files: the example works as written; every kind of mistake is one clear sentence."""

from __future__ import annotations

import pytest

from config import ConfigError
from plugnmeet_webhooks.workflows.rules_file import load_rules, parse_rules
from tests.support.helpers import ROOT

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ENV = {"OPS_SLACK_URL": "https://hooks.slack.test/T0/B0/x", "BILLING_WEBHOOK_SECRET": SECRET}
SLACK = '[destinations.s]\nkind = "slack"\nurl = "https://hooks.slack.test/x"\n'
STRIPE = (
    '[destinations.st]\nkind = "stripe-meter"\nurl = "https://api.stripe.test"\n'
    'secret = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"\nevent_name = "plugnmeet_minutes"\n'
)
HOOK = f'[destinations.h]\nkind = "webhook"\nurl = "https://b.test/h"\nsecret = "{SECRET}"\n'


def test_the_example_file_works_as_written():
    rules = load_rules(str(ROOT / "samples" / "rules.toml"), ENV)
    names = ["vip-joined", "meeting-billed", "ai-budget", "webhooks-lost"]
    assert [r.name for r in rules.rules] == names
    assert rules.destinations["ops-slack"].url == ENV["OPS_SLACK_URL"]
    assert rules.destinations["billing-app"].secret == SECRET
    vip, billed, budget, lost = rules.rules
    assert vip.on == {"participant_joined"} and vip.conditions[0].operator == "in"
    assert billed.send == ("ops-slack", "billing-app")
    assert (budget.once_per, budget.conditions[0].operator) == ("room-day", "gt")
    assert budget.paths == {"room.ai_cost_today", "room.room_id"}
    assert lost.on == {"reconciled"}
    assert lost.paths == {"reconciled.sessions_closed", "reconciled.rooms"}
    assert SECRET not in repr(rules) and ENV["OPS_SLACK_URL"] not in repr(rules)
    assert repr(rules.destinations["ops-slack"]) == "Destination(name='ops-slack', kind='slack')"
    assert repr(rules.destinations["billing-app"]) == (
        "Destination(name='billing-app', kind='webhook')"
    )


def _rule(body: str) -> str:
    return SLACK + HOOK + "[[rules]]\n" + body


MISTAKES = [
    ("this is = not toml [", ["not valid TOML"]),
    (
        '[destinations.s]\nurl = "https://x.test"\n',
        ["destinations.s has no kind", 'kind = one of "slack"'],
    ),
    (
        '[destinations.s]\nkind = "teams"\nurl = "https://x.test"\n',
        [
            """destinations.s: kind is 'teams'; use one of "slack", "webhook", """
            '"stripe-meter", "cloudevents".'
        ],
    ),
    (
        '[destinations.s]\nkind = "slack"\nurl = "ftp://x"\n',
        ["destinations.s.url is not an http(s) URL"],
    ),
    (
        '[destinations.s]\nkind = "slack"\nurl = "env:NOT_SET_ANYWHERE"\n',
        ["NOT_SET_ANYWHERE", "not set"],
    ),
    (
        '[destinations.h]\nkind = "webhook"\nurl = "https://x.test"\n',
        ["destinations.h has no secret", "whsec_"],
    ),
    (
        '[destinations.h]\nkind = "webhook"\nurl = "https://x.test"\nsecret = "hunter2"\n',
        ["not a Standard Webhooks secret"],
    ),
    (
        SLACK + f'secret = "{SECRET}"\n',
        ["destinations.s: a slack destination takes no secret; remove it."],
    ),
    (SLACK + 'colour = "red"\n', ["destinations.s has the unknown key 'colour'"]),
    (_rule('on = "session_ended"\nsend = ["s"]\ntext = "x"\n'), ["rules[1] has no name"]),
    (
        _rule('name = "r"\nsend = ["s"]\ntext = "x"\n'),
        ["rule 'r' has no on", 'on = "participant_joined"'],
    ),
    (_rule('name = "r"\non = "session_ended"\ntext = "x"\n'), ["rule 'r' has no send"]),
    (
        _rule('name = "r"\non = "session_ended"\nsend = ["nowhere"]\ntext = "x"\n'),
        ["sends to 'nowhere'", "[destinations.nowhere]"],
    ),
    (
        _rule('name = "r"\non = "session_ended"\nsend = ["s"]\n'),
        ["""rule 'r' sends to Slack but has no text; add text = "..."."""],
    ),
    (
        _rule('name = "r"\non = "session_ended"\nsend = ["s"]\ntext = "{{ room.room_id "\n'),
        ["rule 'r'.text is not a valid template"],
    ),
    (
        _rule('name = "r"\non = "session_ended"\nsend = ["s"]\ntext = "{{ secrets }}"\n'),
        ["reads 'secrets', which a rule cannot see"],
    ),
    (
        _rule('name = "r"\non = "session_ended"\nsend = ["s"]\ntext = "{{ room.nmae }}"\n'),
        ["reads 'room.nmae'", "room has no 'nmae'", "room_id"],
    ),
    (
        _rule(
            'name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\n'
            'where = { "participant.idnetity" = "u" }\n'
        ),
        ["where names 'participant.idnetity'", "identity"],
    ),
    (
        _rule(
            'name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\n'
            'where = { "room.room_id" = { like = "r%" } }\n'
        ),
        ["operator 'like'", "starts_with"],
    ),
    (
        _rule('name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\nonce_per = "week"\n'),
        ["once_per is 'week'", "room-day"],
    ),
    (
        _rule('name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\nsned = ["h"]\n'),
        ["rule 'r' has the unknown key 'sned'"],
    ),
    (
        _rule('name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\n')
        + '[[rules]]\nname = "r"\non = "a"\nsend = ["s"]\ntext = "y"\n',
        ["rule 'r' is named twice"],
    ),
    (_rule('name = "r"\non = "a"\nsend = "s"\ntext = "x"\n'), ["rule 'r': send must be a list"]),
    ('rule = "oops"\n', ["the rules file has the unknown key 'rule'"]),
    (
        STRIPE + '[[rules]]\nname = "r"\non = "session_ended"\nsend = ["st"]\n',
        ["""rule 'r' sends to a Stripe meter but has no value; add value = "..."."""],
    ),
    (
        STRIPE.replace("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "pk_live_123456789"),
        ["destinations.st.secret is not a Stripe secret key", "sk_live_"],
    ),
    (
        STRIPE.replace('event_name = "plugnmeet_minutes"', 'event_name = "my meter"'),
        ["destinations.st: event_name must be the event name of a Stripe meter"],
    ),
    (
        '[destinations.ce]\nkind = "cloudevents"\nurl = "https://m.test/e"\ntype = "t"\n',
        ["""destinations.ce has no source; add source = "plugnmeet-webhooks"."""],
    ),
    (
        '[destinations.ce]\nkind = "cloudevents"\nurl = "https://m.test/e"\nsource = "s"\n'
        'type = "two words"\n',
        ["destinations.ce: type must be 1 to 200 characters without spaces"],
    ),
    (
        STRIPE + '[[rules]]\nname = "r"\non = "session_ended"\nsend = ["st"]\n'
        'value = "{{ nope }}"\n',
        ["rule 'r'.value reads 'nope', which a rule cannot see"],
    ),
]


@pytest.mark.parametrize(("text", "words"), MISTAKES)
def test_every_mistake_is_one_sentence_naming_where_and_what(text, words):
    with pytest.raises(ConfigError) as caught:
        parse_rules(text, ENV)
    message = str(caught.value)
    for word in words:
        assert word in message, message
    assert message.endswith(".")
    assert SECRET not in message


def test_a_missing_rules_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"PNM_RULES_FILE names .*missing.toml, which cannot"):
        load_rules(str(tmp_path / "missing.toml"))


def test_a_disabled_rule_takes_no_event():
    rules = parse_rules(_rule('name = "r"\non = "a"\nsend = ["s"]\ntext = "x"\nenabled = false\n'))
    assert rules.for_event("a") == []
