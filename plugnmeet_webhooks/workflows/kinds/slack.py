"""The ``slack`` kind: a Slack-style incoming webhook gets the rule's text and a Block Kit
section (room, who, billable minutes or AI cost); Mattermost, Rocket.Chat and Discord (at
its ``/slack`` URL) take the same."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from config import ConfigError
from plugnmeet_webhooks.text import chat_text, cut
from plugnmeet_webhooks.workflows.templates import chat_value

if TYPE_CHECKING:
    from plugnmeet_webhooks.workflows.messages import Facts
    from plugnmeet_webhooks.workflows.reader import Reader
    from plugnmeet_webhooks.workflows.rules import Destination, Rule

SESSION_EVENTS = frozenset({"session_ended", "room_finished"})

# Slack's Block Kit limits: a longer section or field is refused with a 400, which would
# kill the message (and a participant could then suppress an alert about themselves).
SECTION_CHARS = 3000
FIELD_CHARS = 2000
MAX_FIELDS = 10


class SlackKind:
    """A Slack-style incoming webhook: a chat message of the rule's text, not signed."""

    name = "slack"
    title = "Slack"
    rule_keys = ("text",)
    secret_keys = ()
    reads_customers = False
    content_type = "application/json"

    def settings(self, read: Reader, where: str, env: Mapping[str, str]) -> None:
        """A slack destination has no settings of its own: its URL is its secret."""
        if read.get("secret", str, hint='"env:NAME" (a whsec_... secret)') is not None:
            raise ConfigError(f"{where}: a slack destination takes no secret; remove it.")

    def body(
        self,
        rule: Rule,
        destination: Destination,
        facts: Facts,
        message_id: str,
        several_tenants: bool,
    ) -> bytes:
        """The chat message, as compact JSON."""
        message = _message(rule, facts, several_tenants)
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()

    def headers(
        self, destination: Destination, message_id: str, body: bytes, now: float
    ) -> dict[str, str]:
        """None of its own."""
        return {}

    def url(self, destination: Destination) -> str:
        """The incoming webhook's URL, as the rules file gives it."""
        return destination.url


def _message(rule: Rule, facts: Facts, several_tenants: bool) -> dict[str, Any]:
    """The chat message of a rule for one event."""
    assert rule.slack_text is not None
    event = facts.event
    room = event.room.room_id or event.room.sid
    text = rule.slack_text.render(facts.context).strip() or chat_text(f"{event.event} {room}")
    fields: list[tuple[str, Any]] = []
    if several_tenants and rule.tenant is None:  # whose event, when it hears several tenants
        text = f"[{chat_text(facts.tenant)}] {text}"
        fields.append(("Tenant", facts.tenant))
    text = cut(text, SECTION_CHARS)
    fields.append(("Room", room))
    who = event.participant
    if who is not None:
        fields.append(("Who", who.name or who.identity))
    if event.event in SESSION_EVENTS and facts.session.billable_minutes is not None:
        fields.append(("Billable minutes", facts.session.billable_minutes))
    if event.room_artifact is not None:
        fields.append(("AI cost today", f"{facts.room.ai_cost_today:.6f}"))
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    shown = [
        {"type": "mrkdwn", "text": cut(f"*{label}*\n{chat_value(value)}", FIELD_CHARS)}
        for label, value in fields
        if value not in (None, "")
    ][:MAX_FIELDS]
    if shown:  # Slack refuses an empty list of fields
        section["fields"] = shown
    return {"text": text, "blocks": [section]}
