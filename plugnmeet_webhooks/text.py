"""Sender text made safe for one log line."""

from __future__ import annotations


def shown(text: str, limit: int = 120) -> str:
    """Quote sender text for one log line: control characters escaped, long text cut."""
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def plain(text: str, limit: int = 200) -> str:
    """Like :func:`shown`, without the quotes, for ids, paths and names of types."""
    return shown(text, limit)[1:-1]
