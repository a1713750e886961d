"""Forget a participant: their identity and name leave the stored bodies and the ledger.

What they did stays, under a pseudonym that means nothing outside this database: their
attendance minutes, and the AI usage and cost booked to them. Only the fields that name a
person change (a participant's identity, name and metadata; an artifact's user; the keys of
a usage breakdown; the file paths that spell their id or name), so no other data is
touched. A rebuild of the ledger from the rewritten bodies gives the same pseudonymous rows.
The outbox's messages (pending, dead and sent alike) are rewritten too, so a message sent
again carries the pseudonym.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, select

from plugnmeet_webhooks.ledger.tables import FORGOTTEN, attendance, files, participants, usage
from plugnmeet_webhooks.normalize import MAX_NAME, camel_name
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import EventFilter, each_batch, events
from plugnmeet_webhooks.storage.outbox import outbox
from plugnmeet_webhooks.text import chat_text

log = logging.getLogger(__name__)

USAGE_KINDS = ("token_usage", "duration_usage", "character_count_usage")
MIN_NAME = 3  # a shorter name is not looked for inside file paths


@dataclass
class Forgotten:
    """What forgetting a participant changed."""

    pseudonym: str
    events: int = 0
    attendance_rows: int = 0
    usage_rows: int = 0
    messages: int = 0  # outbox messages rewritten
    names: set[str] = field(default_factory=set)
    sids: set[str] = field(default_factory=set)  # their participant sids
    # What is looked for in file paths and recorded errors, the longest first (once the
    # names are all known).
    personal: list[str] = field(default_factory=list)
    # The events that speak of them (tenant, event key): their messages may name them.
    about: set[tuple[str, str]] = field(default_factory=set)


def _theirs(person: dict[str, Any], id_field: str, identity: str, sids: set[str]) -> bool:
    """Whether a person in a body is the one forgotten: by identity, or, sent without one,
    by one of their participant sids."""
    if _get(person, id_field) == identity:
        return True
    return id_field == "identity" and not _get(person, "identity") and _get(person, "sid") in sids


def _get(obj: Any, name: str) -> Any:
    """Read a field by its proto or its camelCase name (senders write either)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(camel_name(name)) if value is None else value


def _set(obj: dict[str, Any], name: str, value: Any) -> None:
    obj[name if name in obj else camel_name(name)] = value


def _api_answer(payload: Any) -> Any:
    """What plugNmeet's API answered, kept beside an event reconciliation stored."""
    return _get(_get(payload, "api"), "answer")


def _metadatas(payload: Any) -> list[dict[str, Any]]:
    """An artifact's metadata: the event's, and the copy in the API's answer."""
    found = (
        _get(_get(payload, "room_artifact"), "metadata"),
        _get(_api_answer(payload), "metadata"),
    )
    return [m for m in found if isinstance(m, dict)]


def _people(payload: Any) -> list[tuple[dict[str, Any], str, str]]:
    """The objects of an event that name a person: (object, id field, name field)."""
    found = []
    participant = _get(payload, "participant")
    if isinstance(participant, dict):
        found.append((participant, "identity", "name"))
    for metadata in _metadatas(payload):
        user = _get(metadata, "user_info")
        if isinstance(user, dict):
            found.append((user, "user_id", "name"))
    speech = _get(payload, "speech_service")
    if isinstance(speech, dict):
        found.append((speech, "user_id", "name"))
    return found


def _names_of(payload: Any, identity: str, done: Forgotten) -> bool:
    """Collect the names and participant sids a person went by where an event names them;
    say whether it does."""
    theirs = False
    for person, id_field, name_field in _people(payload):
        if not _theirs(person, id_field, identity, done.sids):
            continue
        theirs = True
        name, sid = _get(person, name_field), _get(person, "sid")
        if isinstance(name, str) and name:
            done.names.add(name)
        if id_field == "identity" and isinstance(sid, str) and sid:
            done.sids.add(sid)
    return theirs


def _in_text(text: str, personal: list[str], pseudonym: str) -> str:
    for value in personal:
        text = text.replace(value, pseudonym)
    return text


def _rewritten(payload: Any, identity: str, done: Forgotten) -> bool:
    """Replace the person in an event's parsed body, in place; say whether it changed."""
    changed = False
    pseudonym = done.pseudonym
    for person, id_field, name_field in _people(payload):
        if not _theirs(person, id_field, identity, done.sids):
            continue
        _set(person, id_field, pseudonym)
        if _get(person, "sid") == identity:  # a sid that is the identity spells it too
            _set(person, "sid", pseudonym)
        if _get(person, name_field) is not None:
            _set(person, name_field, pseudonym)
        if _get(person, "metadata"):  # a participant's own metadata speaks of them
            _set(person, "metadata", "")
        changed = True
    holders = [(_get(payload, "recording_info"), "file_path")]
    answer = _api_answer(payload)
    if _get(answer, "record_id"):  # a recording as the API listed it
        holders.append((answer, "file_path"))
    for metadata in _metadatas(payload):
        for kind in USAGE_KINDS:
            breakdown = _get(_get(metadata, kind), "breakdown")
            if isinstance(breakdown, dict) and identity in breakdown:
                breakdown[pseudonym] = breakdown.pop(identity)
                changed = True
        holders.append((_get(metadata, "file_info"), "file_path"))
        holders.append((_get(metadata, "provider_job_info"), "file_name"))
    for holder, path_field in holders:
        path = _get(holder, path_field)
        if isinstance(path, str) and (new := _in_text(path, done.personal, pseudonym)) != path:
            _set(holder, path_field, new)
            changed = True
    return changed


_BODIES = (events.c.tenant, events.c.dedupe_key, events.c.body)


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def forget_participant(
    engine: Engine,
    identity: str,
    *,
    tenant: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Forgotten:
    """Replace a participant's identity and names with one pseudonym.

    Two passes over the stored bodies: the first finds the names the participant went by,
    the second rewrites each body that speaks of them. Then the ledger rows, the file paths
    and the recorded handler errors follow. Each run picks a new pseudonym.
    """
    done = Forgotten(pseudonym=f"forgotten-{secrets.token_hex(6)}")
    with engine.connect() as conn:
        query = select(participants.c.name, participants.c.participant_sid).where(
            participants.c.identity == identity
        )
        if tenant is not None:
            query = query.where(participants.c.tenant == tenant)
        for name, sid in conn.execute(query):
            done.names.update([name] if name else [])
            done.sids.add(sid)
    which = EventFilter(tenant=tenant)

    def find_names(conn: Connection, rows: list[Any]) -> None:
        for row in rows:
            if _names_of(_parsed(row.body), identity, done):
                done.about.add((row.tenant, row.dedupe_key))

    each_batch(engine, which, _BODIES, find_names, batch_size=batch_size, write=False)
    names = (n for n in done.names if len(n) >= MIN_NAME)
    done.personal = sorted({identity, *names}, key=len, reverse=True)
    # The outbox first: should a later step fail, a second run still finds the names in the
    # stored bodies and the ledger, and finishes the work.
    done.messages = _forget_in_outbox(engine, identity, done, tenant, batch_size)

    def rewrite(conn: Connection, rows: list[Any]) -> None:
        for row in rows:
            payload = _parsed(row.body)
            if _rewritten(payload, identity, done):
                _store(conn, row.id, payload)
                done.events += 1
        if progress is not None:
            progress(len(rows))

    each_batch(engine, which, _BODIES, rewrite, batch_size=batch_size)
    with write_transaction(engine) as conn:
        done.attendance_rows, done.usage_rows = _ledger(conn, identity, done, tenant)
    return done


def _encoded(payload: Any) -> bytes | None:
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    except RecursionError:  # a body nested past what can be written again
        return None


def _store(conn: Connection, row_id: int, payload: Any) -> None:
    """Write a rewritten body back, unless retention pruned it meanwhile."""
    body = _encoded(payload)
    if body is None:
        log.warning("event %d is nested too deeply to rewrite; its body stays as it was", row_id)
        return
    conn.execute(
        events.update()
        .where(events.c.id == row_id, events.c.pruned_at.is_(None))
        .values(body=body, body_sha256=hashlib.sha256(body).hexdigest())
    )


def _ledger(
    conn: Connection, identity: str, done: Forgotten, tenant: str | None
) -> tuple[int, int]:
    """Put the pseudonym in the ledger rows, paths and errors; return rows changed."""
    pseudonym = done.pseudonym
    mine = participants.c.identity == identity
    booked = usage.c.user_id == identity
    in_breakdown = usage.c.breakdown.contains(json.dumps(identity), autoescape=True)
    scope: list[ColumnElement[bool]] = [events.c.handler_error.is_not(None)]
    paths: list[ColumnElement[bool]] = [files.c.path.is_not(None)]
    if tenant is not None:
        mine = mine & (participants.c.tenant == tenant)
        booked = booked & (usage.c.tenant == tenant)
        in_breakdown = in_breakdown & (usage.c.tenant == tenant)
        scope.append(events.c.tenant == tenant)
        paths.append(files.c.tenant == tenant)
    # A participant sent without a sid is keyed by their identity: that key goes too, in
    # their join and leave marks first, then in their participant row.
    theirs = (
        select(participants.c.participant_sid)
        .where(
            mine,
            participants.c.participant_sid == identity,
            participants.c.tenant == attendance.c.tenant,
            participants.c.room_sid == attendance.c.room_sid,
        )
        .exists()
    )
    conn.execute(
        attendance.update()
        .where(attendance.c.participant_sid == identity, theirs)
        .values(participant_sid=pseudonym)
    )
    conn.execute(
        participants.update()
        .where(mine, participants.c.participant_sid == identity)
        .values(participant_sid=pseudonym)
    )
    # The name becomes the pseudonym, not empty, dated before any event: a later event
    # cannot name them again.
    forgotten = {"identity": pseudonym, "name": pseudonym, "name_at": FORGOTTEN}
    people = conn.execute(participants.update().where(mine).values(forgotten)).rowcount
    changed = conn.execute(usage.update().where(booked).values(user_id=pseudonym)).rowcount
    columns = (usage.c.tenant, usage.c.artifact_id, usage.c.breakdown)
    for row in conn.execute(select(*columns).where(in_breakdown)).all():
        parts = json.loads(row.breakdown)
        if identity in parts:
            parts[pseudonym] = parts.pop(identity)
            conn.execute(
                usage.update()
                .where(usage.c.tenant == row.tenant, usage.c.artifact_id == row.artifact_id)
                .values(breakdown=json.dumps(parts, sort_keys=True))
            )
            changed += 1
    for value in done.personal:
        conn.execute(
            files.update()
            .where(*paths, files.c.path.contains(value, autoescape=True))
            .values(path=func.replace(files.c.path, value, pseudonym))
        )
        conn.execute(
            events.update()
            .where(*scope, events.c.handler_error.contains(value, autoescape=True))
            .values(handler_error=func.replace(events.c.handler_error, value, pseudonym))
        )
    return people, changed


def _pattern(values: Any, *, whole_words: bool) -> re.Pattern[str] | None:
    """One expression finding any of ``values`` in any case, the longest first."""
    ordered = sorted({v for v in values if v}, key=len, reverse=True)
    if not ordered:
        return None
    found = "|".join(re.escape(v) for v in ordered)
    return re.compile(rf"(?<!\w)(?:{found})(?!\w)" if whole_words else found, re.IGNORECASE)


def _forms(values: Any) -> set[str]:
    """Each way a message can hold a value: as sent, cut as names are, as chat text, and in
    the cases a template can give it (upper case spells ß as SS, which no case-blind match
    finds)."""
    forms: set[str] = set()
    for value in values:
        for cut in (value, value[:MAX_NAME]):
            for form in (cut, chat_text(cut)):
                forms.update((form, form.upper(), form.casefold()))
    return forms


def _texts(payload: Any) -> Iterator[tuple[Any, Any]]:
    """Where a message's text is (container, key): a chat message's text, its section's text
    and fields; a webhook's text. Nothing else in it is a person's to rewrite."""
    if not isinstance(payload, dict):
        return
    yield payload, "text"
    for block in payload.get("blocks") or []:
        if isinstance(block, dict):
            yield block.get("text"), "text"
            for item in block.get("fields") or []:
                yield item, "text"
    yield payload.get("data"), "text"


def _forget_in_outbox(
    engine: Engine, identity: str, done: Forgotten, tenant: str | None, size: int
) -> int:
    """Put the pseudonym in the outbox's messages; return how many changed.

    A message's text holds a person as its template wrote them: their identity or a name,
    raw or as chat text, maybe in another case. In a message made from an event about them,
    that is looked for anywhere in the text (short plain names as whole words); in any other,
    as whole words. A webhook's copy of the event is rewritten field by field, like a stored
    body. Keys, types and other values are never touched.
    """
    forms = _forms((identity, *done.names))
    long = [f for f in forms if len(f) >= MIN_NAME or not f.isascii()]  # 李明 is a word too
    short = [f for f in forms if f not in long]
    about_them = [
        p
        for p in (_pattern(long, whole_words=False), _pattern(short, whole_words=True))
        if p is not None
    ]
    elsewhere = [p for p in (_pattern(long, whole_words=True),) if p is not None]
    changed = 0
    last = 0
    while True:
        with write_transaction(engine) as conn:
            query = select(outbox.c.id, outbox.c.tenant, outbox.c.event_key, outbox.c.body).where(
                outbox.c.id > last, outbox.c.pruned_at.is_(None)
            )
            if tenant is not None:
                query = query.where(outbox.c.tenant == tenant)
            rows = conn.execute(query.order_by(outbox.c.id).limit(size)).all()
            for row in rows:
                payload = _parsed(row.body)
                if payload is None:
                    continue
                about = (row.tenant, row.event_key) in done.about
                data = payload.get("data") if isinstance(payload, dict) else None
                if isinstance(data, dict) and isinstance(data.get("event"), dict):
                    about = _rewritten(data["event"], identity, done) or about
                patterns = about_them if about else elsewhere
                for holder, key in _texts(payload):
                    if isinstance(holder, dict) and isinstance(holder.get(key), str):
                        for pattern in patterns:
                            holder[key] = pattern.sub(done.pseudonym, holder[key])
                body = _encoded(payload)
                if body is not None and body != bytes(row.body):
                    conn.execute(outbox.update().where(outbox.c.id == row.id).values(body=body))
                    changed += 1
        if not rows:
            return changed
        last = rows[-1].id
