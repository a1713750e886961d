"""The outbox: messages waiting to leave, written in the transaction of the event that made them.

A message's id is derived from what it is (tenant, rule, destination, and the event or the
``once_per`` key), so the same event can never queue the same message twice: a redelivery,
a replay with ``--notify`` or a backfill finds it there already. Dispatchers claim messages
with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite), and
a message whose dispatcher died is claimed again once its lease runs out: delivery is at
least once, and every attempt carries the same id. While a dispatcher holds a message, its
``next_attempt_at`` is the end of the lease, so "due" is one test on the waiting messages
(pending or sending), which a partial index holds apart from the sent ones. A dispatcher
claims a batch of a destination's messages at once; those it does not attempt (a batch cut
short) it gives back, due again at once and their claim not counted as an attempt.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    func,
    select,
    text,
)

from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import compiled, execute, metadata


class State(StrEnum):
    """Where a message is in its life."""

    PENDING = "pending"
    SENDING = "sending"  # claimed by a dispatcher, under a lease
    SENT = "sent"
    DEAD = "dead"  # refused for good, or out of attempts


outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("tenant", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("destination", Text, nullable=False),
    Column("event_key", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("room_id", Text),
    Column("body", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_until", Float),
    Column("lease_token", String(32)),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("rate_limited", Integer, nullable=False, server_default="0"),
    Column("pruned_at", Float),
    Column("retried_at", Float),
)
Index("ix_outbox_due", outbox.c.state, outbox.c.next_attempt_at)
_WAITING = text("state IN ('pending', 'sending')")
# The messages still to send, apart from the many sent ones: what the dispatcher polls.
Index(
    "ix_outbox_waiting",
    outbox.c.destination,
    outbox.c.next_attempt_at,
    sqlite_where=_WAITING,
    postgresql_where=_WAITING,
)


def message_id(tenant: str, rule: str, destination: str, key: str) -> str:
    """The stable id of a message: the same event (or once_per key) always gives the same."""
    digest = hashlib.sha256("\x1f".join((tenant, rule, destination, key)).encode()).hexdigest()
    return f"msg_{digest[:32]}"


@dataclass(frozen=True, slots=True)
class Message:
    """A message to queue: for whom, from which rule and event, and the bytes to send."""

    message_id: str
    tenant: str
    rule: str
    destination: str
    event_key: str
    event: str
    room_id: str | None
    body: bytes


def _insert(module: Any) -> Any:
    columns = ["message_id", "tenant", "rule", "destination", "event_key", "event", "room_id",
               "body", "state", "next_attempt_at", "created_at"]  # fmt: skip
    statement = module.insert(outbox).values({c: bindparam(c) for c in columns})
    return statement.on_conflict_do_nothing(index_elements=["message_id"])


def _known(module: Any) -> Any:
    return select(outbox.c.id).where(outbox.c.message_id == bindparam("message_id"))


def queued_already(conn: Connection, message: str) -> bool:
    """Tell whether a message with this id is in the outbox already."""
    found = execute(conn, compiled(conn.dialect, _known), {"message_id": message})
    return found.fetchone() is not None


def enqueue(conn: Connection, messages: Sequence[Message]) -> int:
    """Queue messages in the caller's transaction; one already queued is left as it is."""
    when = time.time()
    sql = compiled(conn.dialect, _insert)
    queued = 0
    for message in messages:
        params = {
            "message_id": message.message_id, "tenant": message.tenant, "rule": message.rule,
            "destination": message.destination, "event_key": message.event_key,
            "event": message.event, "room_id": message.room_id, "body": message.body,
            "state": State.PENDING.value, "next_attempt_at": when, "created_at": when,
        }  # fmt: skip
        queued += execute(conn, sql, params).rowcount
    return queued


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message a dispatcher holds under a lease, to send once."""

    id: int
    message_id: str
    destination: str
    body: bytes
    attempts: int  # this attempt included
    rate_limited: int  # the earlier attempts a destination answered "slow down" (429)
    created_at: float
    retried_at: float | None  # when someone last sent it again by hand
    lease_token: str

    @property
    def waiting_since(self) -> float:
        """Since when the message has waited to be sent: made, or sent again by hand."""
        return max(self.created_at, self.retried_at or 0.0)


# Literal, not bound: the planners use the partial index only for a query whose WHERE
# clause states its condition.
_WAITING_NOW = text("outbox.state IN ('pending', 'sending')")


def _due_now(now: float) -> Any:
    return and_(_WAITING_NOW, outbox.c.next_attempt_at <= now)


def due_query(names: Sequence[str], now: float) -> Any:
    """The dispatcher's poll: which of these destinations have a message due at ``now``."""
    return (
        select(outbox.c.destination)
        .where(outbox.c.destination.in_(list(names)), _due_now(now))
        .distinct()
    )


def due_destinations(engine: Engine, names: Sequence[str]) -> set[str]:
    """Return which of these destinations have a message due now (a read, no lock taken)."""
    if not names:
        return set()
    with engine.connect() as conn:
        return set(conn.execute(due_query(names, time.time())).scalars())


@dataclass(frozen=True, slots=True)
class Settlement:
    """How an attempt ended, to record: the message's next state and what the answer was.

    ``given_back``: no attempt was made (a batch stopped before it); the message is due
    again at once, its claim not counted as an attempt, its last answer left as it was.
    """

    claimed: Claimed
    state: State
    status: int | None = None
    error: str | None = None
    next_attempt_at: float | None = None  # for a retry
    sent_at: float | None = None
    rate_limited: bool = False  # the destination asked to slow down: no retry spent
    given_back: bool = False


def given_back(claimed: Claimed) -> Settlement:
    """The settlement of a claimed message that was not attempted: due again, at once."""
    return Settlement(claimed, State.PENDING, given_back=True)


@dataclass(frozen=True, slots=True)
class Held:
    """A message a dispatcher still holds (its attempt is open): its lease is renewed."""

    id: int
    lease_token: str


# A finished attempt, recorded only by the dispatcher that still holds its message.
_HOLDER = and_(outbox.c.id == bindparam("b_id"), outbox.c.lease_token == bindparam("b_token"))
_SETTLE = (
    outbox.update()
    .where(_HOLDER)
    .values(
        state=bindparam("b_state"),
        last_status=bindparam("b_status", type_=Integer),
        last_error=bindparam("b_error", type_=Text),
        lease_until=None,
        lease_token=None,
        next_attempt_at=func.coalesce(bindparam("b_next", type_=Float), outbox.c.next_attempt_at),
        sent_at=func.coalesce(bindparam("b_sent", type_=Float), outbox.c.sent_at),
        rate_limited=outbox.c.rate_limited + bindparam("b_limited", type_=Integer),
    )
)
# A claimed message no attempt was made for: due again at once, the claim not counted.
_GIVE_BACK = (
    outbox.update()
    .where(_HOLDER, outbox.c.state == State.SENDING.value)
    .values(
        state=State.PENDING.value,
        lease_until=None,
        lease_token=None,
        next_attempt_at=bindparam("b_now", type_=Float),
        attempts=outbox.c.attempts - 1,
    )
)

_RENEW = (
    outbox.update()
    .where(_HOLDER, outbox.c.state == State.SENDING.value)
    .values(
        lease_until=bindparam("b_until", type_=Float),
        next_attempt_at=bindparam("b_until", type_=Float),
    )
)


def _settled_params(done: Settlement) -> dict[str, Any]:
    return {
        "b_id": done.claimed.id, "b_token": done.claimed.lease_token,
        "b_state": done.state.value, "b_status": done.status, "b_error": done.error,
        "b_next": done.next_attempt_at, "b_sent": done.sent_at,
        "b_limited": 1 if done.rate_limited else 0,
    }  # fmt: skip


def cycle(
    engine: Engine,
    settled: Sequence[Settlement],
    wanted: dict[str, int],
    lease: float,
    renew: Sequence[Held] = (),
    holding: Sequence[int] = (),
) -> list[Claimed]:
    """Record finished attempts, renew held leases and claim due messages, in one transaction.

    ``wanted`` says how many messages to take per destination, none of those in ``holding``
    (whose attempts are still open here). A claimed message is
    ``sending`` under a lease of ``lease`` seconds; one whose lease ran out (its dispatcher
    died mid-send) is due again. An attempt is recorded, a message given back and a lease
    renewed only if this dispatcher still holds its message. One transaction a cycle, with
    one statement for all the attempts it records, keeps the outbox from taking the
    database's write lock once a message, away from the deliveries.
    """
    now = time.time()
    token = secrets.token_hex(16)
    claimed: list[Claimed] = []
    with write_transaction(engine) as conn:
        attempted = [_settled_params(done) for done in settled if not done.given_back]
        if attempted:  # one statement for them all, not one per message
            conn.execute(_SETTLE, attempted)
        returned = [
            {"b_id": done.claimed.id, "b_token": done.claimed.lease_token, "b_now": now}
            for done in settled
            if done.given_back
        ]
        if returned:
            conn.execute(_GIVE_BACK, returned)
        if renew:
            until = now + lease
            conn.execute(
                _RENEW,
                [{"b_id": h.id, "b_token": h.lease_token, "b_until": until} for h in renew],
            )
        for destination, limit in wanted.items():
            if limit > 0:
                claimed += _claim(conn, destination, limit, now, lease, token, holding)
    return claimed


def _claim(
    conn: Connection,
    destination: str,
    limit: int,
    now: float,
    lease: float,
    token: str,
    holding: Sequence[int],
) -> list[Claimed]:
    query = (
        select(outbox.c.id)
        .where(outbox.c.destination == destination, _due_now(now))
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
    )
    if holding:
        query = query.where(outbox.c.id.not_in(list(holding)))
    if conn.dialect.name == "postgresql":  # several dispatchers never take one message
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    conn.execute(
        outbox.update()
        .where(outbox.c.id.in_(ids))
        .values(
            state=State.SENDING.value,
            lease_until=now + lease,
            next_attempt_at=now + lease,  # due again, to anyone, only if the lease runs out
            lease_token=token,
            attempts=outbox.c.attempts + 1,
        )
    )
    rows = conn.execute(
        select(
            outbox.c.id, outbox.c.message_id, outbox.c.destination, outbox.c.body,
            outbox.c.attempts, outbox.c.rate_limited, outbox.c.created_at, outbox.c.retried_at,
        ).where(outbox.c.id.in_(ids)).order_by(outbox.c.id)
    ).all()  # fmt: skip
    return [Claimed(*row, lease_token=token) for row in rows]


def list_messages(
    engine: Engine, state: State | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Return the newest messages (without their bodies), optionally in one state."""
    columns = [c for c in outbox.c if c.name not in ("body", "lease_token")]
    query = select(*columns).order_by(outbox.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(outbox.c.state == state.value)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def retry(
    engine: Engine, ids: Sequence[int] = (), *, dead: bool = False, only_dead: bool = False
) -> int:
    """Put dead (or given) messages back to pending, due now, with their attempts reset.

    Given ids may name sent messages too (to send one again), unless ``only_dead``. A
    message whose body retention pruned cannot be sent again."""
    condition = outbox.c.state == State.DEAD.value
    if ids:
        state = outbox.c.state
        kept = state == State.DEAD.value if only_dead else state != State.SENDING.value
        condition = outbox.c.id.in_(list(ids)) & kept
    elif not dead:
        return 0
    now = time.time()
    with write_transaction(engine) as conn:
        result = conn.execute(
            outbox.update()
            .where(condition, outbox.c.pruned_at.is_(None))
            .values(
                state=State.PENDING.value, next_attempt_at=now, attempts=0, rate_limited=0,
                retried_at=now,
            )
        )  # fmt: skip
        return int(result.rowcount)


def purge_sent(engine: Engine, before: float) -> int:
    """Delete the messages sent before ``before``."""
    with write_transaction(engine) as conn:
        result = conn.execute(
            outbox.delete().where(outbox.c.state == State.SENT.value, outbox.c.sent_at < before)
        )
        return int(result.rowcount)


def _old(before: float) -> list[Any]:
    """Messages made before ``before`` that still have a body and no dispatcher holds."""
    return [
        outbox.c.created_at < before,
        outbox.c.pruned_at.is_(None),
        outbox.c.state != State.SENDING.value,
    ]


def count_prunable(engine: Engine, before: float) -> int:
    """Count the messages made before ``before`` that still have their body."""
    with engine.connect() as conn:
        query = select(func.count()).select_from(outbox).where(*_old(before))
        return int(conn.execute(query).scalar_one())


def prune(engine: Engine, before: float, *, batch_size: int = 1000) -> int:
    """Retention: delete the sent messages made before ``before``, and empty the bodies of
    the others (a pending one becomes dead: it cannot be sent without its body).

    Returns how many messages went or lost their body."""
    done = 0
    while True:
        with write_transaction(engine) as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.state)
                .where(*_old(before))
                .order_by(outbox.c.id)
                .limit(batch_size)
            ).all()
            sent = [row.id for row in rows if row.state == State.SENT.value]
            kept = [row.id for row in rows if row.state != State.SENT.value]
            # A dispatcher may have claimed one since the read: it keeps its body.
            free = outbox.c.state != State.SENDING.value
            if sent:
                conn.execute(outbox.delete().where(outbox.c.id.in_(sent), free))
            if kept:
                never_sent = outbox.c.state == State.PENDING.value
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_(kept), free)
                    .values(
                        body=b"",
                        pruned_at=time.time(),
                        last_error=case(
                            (never_sent, "pruned by retention before it could be sent"),
                            else_=outbox.c.last_error,
                        ),
                        state=case((never_sent, State.DEAD.value), else_=outbox.c.state),
                    )
                )
        if not rows:
            return done
        done += len(rows)


def counts(engine: Engine) -> tuple[dict[str, int], float | None]:
    """Return how many messages are in each state, and the creation time of the oldest pending."""
    with engine.connect() as conn:
        by_state = {
            state: int(n)
            for state, n in conn.execute(
                select(outbox.c.state, func.count()).group_by(outbox.c.state)
            )
        }
        oldest = conn.execute(select(func.min(outbox.c.created_at)).where(_WAITING_NOW)).scalar()
    return {s.value: by_state.get(s.value, 0) for s in State}, oldest


def backlog(engine: Engine) -> dict[str, int]:
    """Return how many messages wait to be sent (pending or sending), per destination."""
    with engine.connect() as conn:
        query = (
            select(outbox.c.destination, func.count())
            .where(_WAITING_NOW)
            .group_by(outbox.c.destination)
        )
        return {destination: int(n) for destination, n in conn.execute(query)}
