"""The rules file: TOML read with ``tomllib``, checked whole at start-up.

Every mistake stops the service with one sentence that names the rule, the key and what to
put there. Templates are compiled here, and every path they or a ``where`` read is checked
against what a rule can read (:mod:`~plugnmeet_webhooks.workflows.context`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.meta

from config import ConfigError
from plugnmeet_webhooks.workflows.context import CONTEXT, check_path
from plugnmeet_webhooks.workflows.kinds import Kinds, registry
from plugnmeet_webhooks.workflows.reader import NAME, Reader, env_value, load_file
from plugnmeet_webhooks.workflows.rules import (
    NO_RULES,
    ONCE_PER,
    OPERATORS,
    Condition,
    Destination,
    Rule,
    Rules,
)
from plugnmeet_webhooks.workflows.templates import ENV, SLACK_ENV, template_paths


def _choices(names: tuple[str, ...]) -> str:
    """Say which names may be written: '"a"', '"a" or "b"', 'one of "a", "b", "c"'."""
    quoted = [f'"{name}"' for name in names]
    if len(quoted) <= 2:
        return " or ".join(quoted) or '""'
    return f"one of {', '.join(quoted)}"


def _destination(name: str, table: Any, env: Mapping[str, str], kinds: Kinds) -> Destination:
    where = f"destinations.{name}"
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: a destination's name is letters, digits, '.', '_' or '-'.")
    read = Reader(table, where)
    choices = _choices(kinds.names)
    written = read.get("kind", str, required=True, hint=choices)
    kind = kinds.get(written)
    if kind is None:
        raise ConfigError(f"{where}: kind is {written!r}; use {choices}.")
    url = env_value(
        read.get("url", str, required=True, hint='"https://..." or "env:NAME"'), f"{where}.url", env
    )
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{where}.url is not an http(s) URL; write https://host/path.")
    settings = kind.settings(read, where, env)
    read.done()
    secret = getattr(settings, "secret", None)
    return Destination(name=name, kind=kind, url=url, secret=secret, settings=settings)


def _conditions(where_table: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(where_table, dict):
        raise ConfigError(
            f'{where}.where must be a table, like where = {{ "room.room_id" = "r1" }}.'
        )
    found = []
    for path, test in where_table.items():
        problem = check_path(path)
        if problem:
            raise ConfigError(f"{where}.where names {path!r}, but {problem}.")
        if isinstance(test, list):
            found.append(Condition(path, "in", tuple(test)))
        elif isinstance(test, dict):
            for operator, value in test.items():
                if operator not in OPERATORS:
                    raise ConfigError(
                        f"{where}.where.{path} has the operator {operator!r}; "
                        f"use one of {', '.join(OPERATORS)}."
                    )
                if operator in ("in", "not_in"):
                    if not isinstance(value, list):
                        raise ConfigError(f"{where}.where.{path}.{operator} must be a list.")
                    value = tuple(value)
                found.append(Condition(path, operator, value))
        else:
            found.append(Condition(path, "eq", test))
    return tuple(found)


def _template(source: str, where: str, key: str = "text") -> jinja2.Template:
    try:
        parsed = ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"{where}.{key} is not a valid template: {exc.message} (line {exc.lineno})."
        ) from None
    for name in sorted(jinja2.meta.find_undeclared_variables(parsed)):
        if name not in CONTEXT:
            raise ConfigError(
                f"{where}.{key} reads {name!r}, which a rule cannot see; use {', '.join(CONTEXT)}."
            )
    for path in template_paths(source):
        problem = check_path(path)
        if problem:
            raise ConfigError(f"{where}.{key} reads {path!r}, but {problem}.")
    return ENV.from_string(source)


def _rule(
    number: int, table: Any, destinations: Mapping[str, Destination], names: set[str]
) -> Rule:
    where = f"rules[{number}]"
    read = Reader(table, where)
    name = read.get("name", str, required=True, hint='"vip-joined"')
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-'.")
    if name in names:
        raise ConfigError(f"rule {name!r} is named twice; give each rule its own name.")
    where = f"rule {name!r}"
    read.where = where
    on = table.get("on")
    read.read.add("on")
    if isinstance(on, str):
        on = [on]
    if not on or not isinstance(on, list) or not all(isinstance(e, str) and e for e in on):
        raise ConfigError(f'{where} has no on; add on = "participant_joined" (or a list).')
    send = read.get("send", list, required=True, hint='["ops-slack"]')
    if not send:
        raise ConfigError(f'{where}: send is empty; name a destination, like send = ["ops-slack"].')
    for target in send:
        if target not in destinations:
            known = ", ".join(sorted(destinations)) or "none yet"
            raise ConfigError(
                f"{where} sends to {target!r}, which is not a destination; add "
                f"[destinations.{target}] or use one of: {known}."
            )
    text_source = read.get("text", str, hint='"{{ room.room_id }} ended"') or ""
    value_source = read.get("value", str, hint='"{{ session.billable_minutes }}"') or ""
    for target in send:
        kind = destinations[target].kind
        for key in kind.rule_keys:
            if not table.get(key):
                raise ConfigError(
                    f'{where} sends to {kind.title} but has no {key}; add {key} = "...".'
                )
    once_per = read.get("once_per", str, hint='"room-day"') or "event"
    if once_per not in ONCE_PER:
        raise ConfigError(f"{where}: once_per is {once_per!r}; use one of {', '.join(ONCE_PER)}.")
    tenant = read.get("tenant", str, hint='"acme"')
    enabled = read.get("enabled", bool, hint="true")
    conditions = _conditions(read.get("where", dict, hint="{ ... }") or {}, where)
    read.done()
    names.add(name)
    if enabled is False:
        return Rule(name=name, on=frozenset(), send=tuple(send))
    return Rule(
        name=name,
        on=frozenset(on),
        send=tuple(send),
        conditions=conditions,
        text=_template(text_source, where) if text_source else None,
        slack_text=SLACK_ENV.from_string(text_source) if text_source else None,
        text_source=text_source,
        once_per=once_per,
        tenant=tenant,
        value=_template(value_source, where, "value") if value_source else None,
        value_source=value_source,
    )


def parse_rules(
    text: str, env: Mapping[str, str] | None = None, kinds: Kinds | None = None
) -> Rules:
    """Read a rules file's text, or say in one sentence what is wrong and where (``kinds``:
    the destination kinds it may use; by default the built-in ones)."""
    env = os.environ if env is None else env
    kinds = registry if kinds is None else kinds
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the rules file is not valid TOML: {exc}.") from None
    top = Reader(document, "the rules file")
    tables = top.get("destinations", dict, hint="{ ... }") or {}
    destinations = {name: _destination(name, table, env, kinds) for name, table in tables.items()}
    listed = document.get("rules", [])
    top.read.add("rules")
    if not isinstance(listed, list):
        raise ConfigError("rules must be written as [[rules]] tables.")
    top.done()
    names: set[str] = set()
    rules = tuple(_rule(n, table, destinations, names) for n, table in enumerate(listed, 1))
    return Rules(destinations=destinations, rules=rules)


def load_rules(
    path: str | None, env: Mapping[str, str] | None = None, kinds: Kinds | None = None
) -> Rules:
    """Read the rules file ``PNM_RULES_FILE`` names; no file means no rules."""
    if not path:
        return NO_RULES
    return load_file(path, "PNM_RULES_FILE", lambda text: parse_rules(text, env, kinds))
