"""Sender text made safe to show: on one log line, in a terminal, in a spreadsheet, in a chat."""

from __future__ import annotations

import re
import unicodedata


def shown(text: str, limit: int = 120) -> str:
    """Quote sender text for one log line: control characters escaped, long text cut."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def plain(text: str, limit: int = 200) -> str:
    """Like :func:`shown`, without the quotes, for ids, paths and names of types."""
    return shown(text, limit)[1:-1]


def printable(text: str) -> str:
    """Escape the characters a terminal would act on (newlines, escapes); keep the rest."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Keep a spreadsheet from reading a cell as a formula: prefix such a cell with a quote."""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


# The characters that format, link or mention in Slack's mrkdwn or in the Markdown of
# Mattermost, Rocket.Chat and Discord, each replaced by a look-alike that does nothing there.
# (Slack's & < > need no entities once they are look-alikes: no tag can be opened.)
_CHAT_LOOKALIKES = str.maketrans(
    {
        "&": "\uff06",  # fullwidth ampersand
        "<": "\u2039",  # single left angle quotation mark
        ">": "\u203a",  # single right angle quotation mark
        "*": "\u2217",  # asterisk operator
        "~": "\u223c",  # tilde operator
        "`": "\u02cb",  # modifier letter grave accent
        "|": "\u2223",  # divides
        "[": "\uff3b",  # fullwidth left square bracket
        "]": "\uff3d",  # fullwidth right square bracket
        "#": "\uff03",  # fullwidth number sign
        "@": "\uff20",  # fullwidth commercial at (no @channel, @all, @here or @someone)
        ":": "\u2236",  # ratio (no emoji codes, no https://)
        "\\": "\u2216",  # set minus (no escapes of the template's own marks)
        "$": "\uff04",  # fullwidth dollar sign (no formulas where chats render them)
        # Letters that show nothing: a line of them hides what follows.
        "\u115f": " ",
        "\u1160": " ",
        "\u2800": " ",
        "\u3164": " ",
        "\uffa0": " ",
    }
)
# An underscore inside a word formats nothing; at a word's edge it can start or end italics.
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# A dot between letters or digits, in any script, makes a bare domain (example.com, пример.рф)
# that chats turn into links.
_DOMAIN_DOT = re.compile(r"(?<=\w)[.\uff0e](?=\w)")
# "- x", "+ x", "1. x" or "1) x" at the start of a line is a list in Markdown.
_LIST_MARK = re.compile(r"^(?:[-+]|[0-9]{1,9}[.)])(?= )")
_LIST_LOOKALIKES = str.maketrans({"-": "\u2010", "+": "\uff0b", ".": "\u2024", ")": "\uff09"})
_SPACES = re.compile(r" {2,}")
CHAT_VALUE_CHARS = 200


def _blank(c: str) -> bool:
    """Whether a character breaks or hides text: a line or paragraph break, a control or
    format character (direction overrides, zero-width ones; the emoji joiner stays)."""
    return c.isspace() or (unicodedata.category(c) in ("Cc", "Cf") and c != "\u200d")


def chat_text(value: object, limit: int = CHAT_VALUE_CHARS) -> str:
    """Make a value from an event plain text in a chat message: one line, at most ``limit``
    characters, with nothing that formats, links or mentions on Slack, Mattermost,
    Rocket.Chat or Discord."""
    text = ("" if value is None else str(value)).translate(_CHAT_LOOKALIKES)
    if not text.isprintable() or "  " in text:
        text = _SPACES.sub(" ", "".join(" " if _blank(c) else c for c in text))
    text = _LIST_MARK.sub(lambda m: m.group().translate(_LIST_LOOKALIKES), text.strip())
    # One dot leader, and modifier letter low macron.
    text = _DOMAIN_DOT.sub("\u2024", _EDGE_UNDERSCORE.sub("\u02cd", text))
    return cut(text, limit)


def cut(text: str, limit: int) -> str:
    """Cut text to at most ``limit`` characters, marking a cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def counted(n: int, thing: str) -> str:
    """A count and its noun: 1 session, 2 sessions, 1,200 artifacts."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"
