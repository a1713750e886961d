"""Forget a participant: their identity and name leave the stored bodies and the ledger.

What they did stays, under a pseudonym that means nothing outside this database: their
attendance minutes, and the AI usage and cost booked to them. A rebuild of the ledger from
the rewritten bodies gives the same pseudonymous rows.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, or_, select

from plugnmeet_webhooks.ledger.tables import attendance, usage
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import events


@dataclass
class Forgotten:
    """What forgetting a participant changed."""

    pseudonym: str
    events: int = 0
    attendance_rows: int = 0
    usage_rows: int = 0
    names: set[str] = field(default_factory=set)


def _walk(value: Any, visit: Callable[[Any], Any]) -> Any:
    """Rebuild a JSON value, letting ``visit`` replace strings and object keys.

    A string that holds JSON itself (participant and room metadata do) is walked too.
    """
    if isinstance(value, dict):
        return {visit(k): _walk(v, visit) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, visit) for v in value]
    if isinstance(value, str):
        if value[:1] in ("{", "[") and len(value) > 1:
            try:
                inner = json.loads(value)
            except ValueError:
                return visit(value)
            walked = _walk(inner, visit)
            return value if walked == inner else json.dumps(walked, ensure_ascii=False)
        return visit(value)
    return value


def _names_of(payload: Any, identity: str, found: set[str]) -> None:
    """Collect the names given with ``identity`` (a participant's, an artifact user's)."""
    if isinstance(payload, dict):
        who = payload.get("identity", payload.get("user_id", payload.get("userId")))
        name = payload.get("name")
        if who == identity and isinstance(name, str) and name:
            found.add(name)
        for value in payload.values():
            _names_of(value, identity, found)
    elif isinstance(payload, list):
        for value in payload:
            _names_of(value, identity, found)


def _bodies(conn: Connection, tenant: str | None, after: int, size: int) -> list[Any]:
    query = select(events.c.id, events.c.body).where(
        events.c.id > after, events.c.pruned_at.is_(None)
    )
    if tenant is not None:
        query = query.where(events.c.tenant == tenant)
    return list(conn.execute(query.order_by(events.c.id).limit(size)))


def forget_participant(
    engine: Engine,
    identity: str,
    *,
    tenant: str | None = None,
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> Forgotten:
    """Replace a participant's identity and names everywhere with one pseudonym.

    Two passes over the stored bodies: the first finds the names the participant went by,
    the second rewrites every body that mentions the identity or one of those names. Then
    the attendance and usage rows follow. Safe to repeat; each run picks a new pseudonym.
    """
    done = Forgotten(pseudonym=f"forgotten-{secrets.token_hex(6)}")
    with engine.connect() as conn:
        done.names.update(
            n
            for n in conn.execute(
                select(attendance.c.name).where(attendance.c.identity == identity)
            ).scalars()
            if n
        )
    for rewrite in (False, True):
        last = 0
        while True:
            with write_transaction(engine) as conn:
                rows = _bodies(conn, tenant, last, batch_size)
                for row in rows:
                    if not rewrite:
                        _names_of(_parsed(row.body), identity, done.names)
                    elif (new := _rewritten(row.body, identity, done)) is not None:
                        conn.execute(
                            events.update()
                            .where(events.c.id == row.id)
                            .values(body=new, body_sha256=hashlib.sha256(new).hexdigest())
                        )
                        done.events += 1
            if not rows:
                break
            last = rows[-1].id
            if progress is not None and rewrite:
                progress(len(rows))
    with write_transaction(engine) as conn:
        done.attendance_rows, done.usage_rows = _ledger(conn, identity, tenant, done.pseudonym)
    return done


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _rewritten(body: bytes, identity: str, done: Forgotten) -> bytes | None:
    """Return the body with the identity and names replaced, or None when neither is in it."""
    payload = _parsed(body)
    if payload is None:
        return None
    personal = {identity, *done.names}

    def visit(text: Any) -> Any:
        return done.pseudonym if text in personal else text

    walked = _walk(payload, visit)
    if walked == payload:
        return None
    return json.dumps(walked, ensure_ascii=False, separators=(",", ":")).encode()


def _ledger(conn: Connection, identity: str, tenant: str | None, pseudonym: str) -> tuple[int, int]:
    """Put the pseudonym in the attendance and usage rows; return how many rows changed."""
    mine = attendance.c.identity == identity
    # Booked to them, or counting them in a breakdown (whose keys are user ids).
    booked = or_(usage.c.user_id == identity, usage.c.breakdown.contains(identity, autoescape=True))
    if tenant is not None:
        mine = mine & (attendance.c.tenant == tenant)
        booked = booked & (usage.c.tenant == tenant)
    # A participant sent without a sid is keyed by their identity: that key goes too.
    conn.execute(
        attendance.update()
        .where(mine, attendance.c.participant_sid == identity)
        .values(participant_sid=pseudonym)
    )
    people = conn.execute(attendance.update().where(mine).values(identity=pseudonym, name=None))
    columns = (usage.c.tenant, usage.c.artifact_id, usage.c.user_id, usage.c.breakdown)
    rows = list(conn.execute(select(*columns).where(booked)))
    for row in rows:
        breakdown = row.breakdown
        if breakdown:
            parts = json.loads(breakdown)
            breakdown = json.dumps(
                {pseudonym if k == identity else k: v for k, v in parts.items()}, sort_keys=True
            )
        conn.execute(
            usage.update()
            .where(usage.c.tenant == row.tenant, usage.c.artifact_id == row.artifact_id)
            .values(
                user_id=pseudonym if row.user_id == identity else row.user_id,
                breakdown=breakdown,
            )
        )
    return people.rowcount, len(rows)
