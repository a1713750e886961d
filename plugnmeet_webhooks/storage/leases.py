"""Leases: one holder at a time for a named job, across processes and hosts.

A lease is a row (name, holder, expiry). Taking it succeeds when nobody holds it or the
holder's time ran out; its holder renews it while it works and releases it when done. Each
check and its write are one ``UPDATE … WHERE`` (or the first ``INSERT``), so two takers never
both win.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Column, Engine, Float, Table, Text, bindparam, literal_column

from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import compiled, execute, metadata

leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at", Float, nullable=False),
)


def _insert(module: Any) -> Any:
    values: dict[str, Any] = {c: bindparam(c) for c in ("name", "holder", "expires_at")}
    return module.insert(leases).values(values).on_conflict_do_nothing(index_elements=["name"])


def _take(module: Any) -> Any:
    return (
        leases.update()
        .where(leases.c.name == bindparam("lease_name"), leases.c.expires_at < bindparam("now"))
        .values(holder=bindparam("holder"), expires_at=bindparam("expires_at"))
    )


def _renew(module: Any) -> Any:
    return (
        leases.update()
        .where(
            leases.c.name == bindparam("lease_name"),
            leases.c.holder == bindparam("me"),
            leases.c.expires_at >= bindparam("now"),
        )
        .values(expires_at=bindparam("expires_at"))
    )


def _release(module: Any) -> Any:
    return (
        leases.update()
        .where(leases.c.name == bindparam("lease_name"), leases.c.holder == bindparam("me"))
        .values(expires_at=literal_column("0"))
    )


def take(engine: Engine, name: str, holder: str, seconds: float) -> bool:
    """Take the lease ``name`` for ``seconds`` if it is free; tell whether ``holder`` has it."""
    now = time.time()
    until = now + seconds
    with write_transaction(engine) as conn:
        row = {"name": name, "holder": holder, "expires_at": until}
        if execute(conn, compiled(conn.dialect, _insert), row).rowcount == 1:
            return True
        params = {"lease_name": name, "now": now, "holder": holder, "expires_at": until}
        return bool(execute(conn, compiled(conn.dialect, _take), params).rowcount == 1)


def renew(engine: Engine, name: str, holder: str, seconds: float) -> bool:
    """Extend the lease ``holder`` has to ``seconds`` from now; False if it has it no more."""
    now = time.time()
    params = {"lease_name": name, "me": holder, "now": now, "expires_at": now + seconds}
    with write_transaction(engine) as conn:
        return bool(execute(conn, compiled(conn.dialect, _renew), params).rowcount == 1)


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up, if ``holder`` has it, so that the next taker need not wait."""
    with write_transaction(engine) as conn:
        execute(conn, compiled(conn.dialect, _release), {"lease_name": name, "me": holder})
