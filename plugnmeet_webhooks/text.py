"""Sender text made safe to show: on one log line, in a terminal, in a spreadsheet."""

from __future__ import annotations


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
