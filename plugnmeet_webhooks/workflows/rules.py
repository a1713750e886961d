"""Rules in a TOML file: which events tell whom, and what they say.

A rules file has destinations (where messages go) and rules (which events send what to
them). It is read once, at start-up, and every mistake stops the service with one sentence
that names the rule, the key and what to put there. Templates are Jinja2, rendered in a
sandbox: a rules file can read the event and the ledger, nothing else.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.sandbox
from standardwebhooks.webhooks import Webhook

from config import ConfigError
from plugnmeet_webhooks import normalize
from plugnmeet_webhooks.text import chat_text

KINDS = ("slack", "webhook")
ONCE_PER = ("event", "session", "participant", "room", "room-day", "day")
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# What a rule can read: each name of the context, and the fields below it.
SESSION_FIELDS = (
    "room_sid", "started_at", "ended_at", "end_source", "status", "duration_seconds",
    "billable_minutes",
)  # fmt: skip
ROOM_FACTS = ("title", "ai_cost_today")


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What a reconciliation pass repaired for one tenant: the ``reconciled`` event's facts."""

    sessions_closed: int = 0
    sessions_discovered: int = 0
    artifacts_added: int = 0
    recordings_added: int = 0
    unresolved: int = 0
    rooms: str = ""  # the rooms repaired, comma-separated
    since: str = ""  # the start of the window the pass looked at (ISO 8601)


RECONCILED = "reconciled"
"""The event a pass that repaired something raises, for rules to tell someone."""

CONTEXT: dict[str, Any] = {
    "event": str,
    "id": str,
    "created_at": int,
    "tenant": str,
    "room": normalize.Room,
    "participant": normalize.Participant,
    "track": normalize.Track,
    "recording_info": normalize.RecordingInfo,
    "speech_service": normalize.SpeechService,
    "analytics": normalize.Analytics,
    "room_artifact": normalize.Artifact,
    "session": SESSION_FIELDS,
    "reconciled": Reconciled,
}


def _fields_of(kind: Any) -> tuple[str, ...] | None:
    """The names readable below a context entry, or None for a plain value."""
    if isinstance(kind, tuple):
        return kind
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        names = tuple(f.name for f in dataclasses.fields(kind))
        return (*names, *ROOM_FACTS) if kind is normalize.Room else names
    return None


def _check_path(path: str) -> str | None:
    """Say what is wrong with a dotted path into the context, or None if it names something."""
    kind: Any = CONTEXT
    walked: list[str] = []
    for step in path.split("."):
        names = tuple(CONTEXT) if kind is CONTEXT else _fields_of(kind)
        where = ".".join(walked) or "a rule"
        if names is None:
            return f"{where} has no fields"
        if step not in names:
            return f"{where} has no {step!r}; it has {', '.join(names)}"
        walked.append(step)
        if kind is CONTEXT:
            kind = CONTEXT[step]
        elif dataclasses.is_dataclass(kind):
            inner = {f.name: f for f in dataclasses.fields(kind)}.get(step)
            kind = _nested(inner.type) if inner is not None else None
        else:
            kind = None
    return None


def _nested(annotation: Any) -> Any:
    """The dataclass a field holds, when it holds one (annotations are strings here)."""
    text = str(annotation).replace(" | None", "")
    return getattr(normalize, text, None) if text[:1].isupper() else None


@dataclass(frozen=True, slots=True)
class Destination:
    """Where messages go: a Slack-style incoming webhook, or a signed webhook."""

    name: str
    kind: str
    url: str = dataclasses.field(repr=False)
    secret: str | None = dataclasses.field(default=None, repr=False)

    def signer(self) -> Webhook:
        """Return the Standard Webhooks signer of this destination's secret."""
        assert self.secret is not None
        return Webhook(self.secret)


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of a ``where`` table: a path, an operator, a value."""

    path: str
    operator: str
    value: Any

    def holds(self, found: Any) -> bool:
        """Tell whether the value found at the path passes this test."""
        try:
            return bool(_OPERATIONS[self.operator](found, self.value))
        except TypeError:  # comparing a number with nothing, say: it does not hold
            return False


_OPERATIONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "contains": lambda a, b: isinstance(a, str) and b in a,
    "starts_with": lambda a, b: isinstance(a, str) and a.startswith(b),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """Which events a rule takes, what it sends, and to where."""

    name: str
    on: frozenset[str]
    send: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    text: jinja2.Template | None = None
    slack_text: jinja2.Template | None = None  # the same text, sender values plain for chat
    text_source: str = ""
    once_per: str = "event"
    tenant: str | None = None

    @property
    def paths(self) -> frozenset[str]:
        """The context paths the rule reads (to fetch only the ledger facts it needs)."""
        return frozenset(c.path for c in self.conditions) | _template_paths(self.text_source)


@dataclass(frozen=True, slots=True)
class Rules:
    """A whole rules file: its destinations and its rules, by event name."""

    destinations: Mapping[str, Destination]
    rules: tuple[Rule, ...]

    def for_event(self, name: str) -> list[Rule]:
        """Return the rules that take events of this name."""
        return [rule for rule in self.rules if name in rule.on]

    @property
    def events(self) -> frozenset[str]:
        """The event names any rule takes."""
        return frozenset(name for rule in self.rules for name in rule.on)


NO_RULES = Rules(destinations={}, rules=())


def tenant_warnings(rules: Rules, tenants: tuple[str, ...]) -> list[str]:
    """Warn of the rules that hear every tenant's events, when there is more than one."""
    if len(tenants) < 2:
        return []
    return [
        f"rule {rule.name!r} has no tenant, so it takes the events of every tenant "
        f"({', '.join(tenants)}) and its chat messages name the tenant; add "
        f'tenant = "{tenants[0]}" to keep it to one.'
        for rule in rules.rules
        if rule.tenant is None and rule.on
    ]


def chat_value(value: Any) -> Any:
    """A value a template puts in a chat message: numbers as they are, anything else as
    plain text that cannot format, link or mention (:func:`~plugnmeet_webhooks.text.chat_text`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return chat_text(value)


# Templates render in a sandbox: no file access, no unsafe attributes. Missing values render
# as nothing. For chat every value a template puts in is made plain text (the template's own
# text is not, so a rule may use *bold*, :emoji: or mention <!here> on purpose).
_ENV = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.ChainableUndefined)
_SLACK_ENV = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.ChainableUndefined, finalize=chat_value
)


def _template_paths(source: str) -> frozenset[str]:
    """The dotted names a template reads, e.g. ``room.ai_cost_today``."""
    if not source:
        return frozenset()
    try:
        parsed = _ENV.parse(source)
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


class _Reader:
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


def _value(text: str, where: str, env: Mapping[str, str]) -> str:
    """Read a value that may say ``env:NAME``: then it comes from the environment."""
    if not text.startswith("env:"):
        return text
    name = text.removeprefix("env:")
    found = env.get(name, "").strip()
    if not found:
        raise ConfigError(f"{where} reads the environment variable {name}, which is not set.")
    return found


def _destination(name: str, table: Any, env: Mapping[str, str]) -> Destination:
    where = f"destinations.{name}"
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: a destination's name is letters, digits, '.', '_' or '-'.")
    read = _Reader(table, where)
    kind = read.get("kind", str, required=True, hint='"slack" or "webhook"')
    if kind not in KINDS:
        raise ConfigError(f'{where}: kind is {kind!r}; use "slack" or "webhook".')
    url = _value(
        read.get("url", str, required=True, hint='"https://..." or "env:NAME"'), f"{where}.url", env
    )
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ConfigError(f"{where}.url is not an http(s) URL; write https://host/path.")
    secret = None
    hint = '"env:NAME" (a whsec_... secret)'
    raw_secret = read.get("secret", str, required=kind == "webhook", hint=hint)
    if kind == "slack" and raw_secret is not None:
        raise ConfigError(f"{where}: a slack destination takes no secret; remove it.")
    if raw_secret is not None:
        secret = _value(raw_secret, f"{where}.secret", env)
        try:
            Webhook(secret)
            valid = secret.startswith("whsec_") and len(secret) > 20
        except Exception:  # the library's base64 errors
            valid = False
        if not valid:
            raise ConfigError(
                f"{where}.secret is not a Standard Webhooks secret; use whsec_ followed by "
                "base64, e.g. from: echo whsec_$(openssl rand -base64 32)."
            )
    read.done()
    return Destination(name=name, kind=kind, url=url, secret=secret)


def _conditions(where_table: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(where_table, dict):
        raise ConfigError(
            f'{where}.where must be a table, like where = {{ "room.room_id" = "r1" }}.'
        )
    found = []
    for path, test in where_table.items():
        problem = _check_path(path)
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


def _template(source: str, where: str) -> jinja2.Template:
    try:
        parsed = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"{where}.text is not a valid template: {exc.message} (line {exc.lineno})."
        ) from None
    for name in sorted(jinja2.meta.find_undeclared_variables(parsed)):
        if name not in CONTEXT:
            raise ConfigError(
                f"{where}.text reads {name!r}, which a rule cannot see; use {', '.join(CONTEXT)}."
            )
    for path in _template_paths(source):
        problem = _check_path(path)
        if problem:
            raise ConfigError(f"{where}.text reads {path!r}, but {problem}.")
    return _ENV.from_string(source)


def _rule(
    number: int, table: Any, destinations: Mapping[str, Destination], names: set[str]
) -> Rule:
    where = f"rules[{number}]"
    read = _Reader(table, where)
    name = read.get("name", str, required=True, hint='"vip-joined"')
    if not _NAME.fullmatch(name):
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
    if not text_source and any(destinations[t].kind == "slack" for t in send):
        raise ConfigError(f'{where} sends to Slack but has no text; add text = "...".')
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
        slack_text=_SLACK_ENV.from_string(text_source) if text_source else None,
        text_source=text_source,
        once_per=once_per,
        tenant=tenant,
    )


def parse_rules(text: str, env: Mapping[str, str] | None = None) -> Rules:
    """Read a rules file's text, or say in one sentence what is wrong and where."""
    env = os.environ if env is None else env
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the rules file is not valid TOML: {exc}.") from None
    top = _Reader(document, "the rules file")
    tables = top.get("destinations", dict, hint="{ ... }") or {}
    destinations = {name: _destination(name, table, env) for name, table in tables.items()}
    listed = document.get("rules", [])
    top.read.add("rules")
    if not isinstance(listed, list):
        raise ConfigError("rules must be written as [[rules]] tables.")
    top.done()
    names: set[str] = set()
    rules = tuple(_rule(n, table, destinations, names) for n, table in enumerate(listed, 1))
    return Rules(destinations=destinations, rules=rules)


def load_rules(path: str | None, env: Mapping[str, str] | None = None) -> Rules:
    """Read the rules file ``PNM_RULES_FILE`` names; no file means no rules."""
    if not path:
        return NO_RULES
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(
            f"PNM_RULES_FILE names {path}, which cannot be read ({reason})."
        ) from None
    try:
        return parse_rules(text, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
