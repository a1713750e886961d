"""Rule templates: Jinja2 in a sandbox, over the rule's context.

No file access and no unsafe attributes; a missing value renders as nothing. For chat,
each value a template puts in becomes plain text that cannot format, link or mention.
"""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox

from plugnmeet_webhooks.text import chat_text


def chat_value(value: Any) -> Any:
    """A value a template puts in a chat message: numbers as they are, anything else as
    plain text that cannot format, link or mention (:func:`~plugnmeet_webhooks.text.chat_text`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return chat_text(value)


# Templates render in a sandbox: no file access, no unsafe attributes. Missing values render
# as nothing. For chat every value a template puts in is made plain text (the template's own
# text is not, so a rule may use *bold*, :emoji: or mention <!here> on purpose).
ENV = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)
SLACK_ENV = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.ChainableUndefined, finalize=chat_value
)


def template_paths(source: str) -> frozenset[str]:
    """The dotted names a template reads, e.g. ``room.ai_cost_today``."""
    if not source:
        return frozenset()
    try:
        parsed = ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return frozenset()
    paths = set()
    for node in parsed.find_all((jinja2.nodes.Getattr, jinja2.nodes.Name)):
        chain: list[str] = []
        while isinstance(node, jinja2.nodes.Getattr):
            chain.append(node.attr)
            node = node.node
        if isinstance(node, jinja2.nodes.Name) and node.ctx == "load":
            paths.add(".".join([node.name, *reversed(chain)]))
    # Keep the longest paths: 'room.room_id' says all 'room' would.
    return frozenset(p for p in paths if not any(o.startswith(p + ".") for o in paths))
