"""Reading a TOML settings file: one table at a time, its keys checked, each mistake named
where it is.

:mod:`~plugnmeet_webhooks.workflows.rules_file` reads the rules file with it, each
destination kind (:mod:`~plugnmeet_webhooks.workflows.kinds`) its own keys of a
destination's table, and :mod:`~plugnmeet_webhooks.billing.billing_file` the billing file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from config import ConfigError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Reader:
    """Read one table of the file, naming where each mistake is."""

    def __init__(self, table: Any, where: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table, like [{where}].")
        self.table = table
        self.where = where
        self.read: set[str] = set()

    def get(self, key: str, kind: type, *, required: bool = False, hint: str = "") -> Any:
        self.read.add(key)
        if key not in self.table:
            if required:
                raise ConfigError(f"{self.where} has no {key}; add {key} = {hint}.")
            return None
        value = self.table[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            wanted = {str: "a string", list: "a list", dict: "a table", bool: "true or false"}
            raise ConfigError(
                f"{self.where}: {key} must be {wanted.get(kind, kind.__name__)}, like "
                f"{key} = {hint}."
            )
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.read)
        if unknown:
            raise ConfigError(
                f"{self.where} has the unknown key {unknown[0]!r}; "
                f"the keys are {', '.join(sorted(self.read))}."
            )


def env_value(text: str, where: str, env: Mapping[str, str]) -> str:
    """Read a value that may say ``env:NAME``: then it comes from the environment."""
    if not text.startswith("env:"):
        return text
    name = text.removeprefix("env:")
    found = env.get(name, "").strip()
    if not found:
        raise ConfigError(f"{where} reads the environment variable {name}, which is not set.")
    return found


Parsed = TypeVar("Parsed")


def load_file(path: str, setting: str, parse: Callable[[str], Parsed]) -> Parsed:
    """Read the file a setting names and parse it; a mistake's sentence starts with the path."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(f"{setting} names {path}, which cannot be read ({reason}).") from None
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
