"""Reconciliation's passes: when each ran, for which tenant, and what it changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    select,
)

from plugnmeet_webhooks.storage.sql import metadata

COMPLETED = "completed"
FAILED = "failed"

reconcile_passes = Table(
    "reconcile_passes",
    metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("since", Float, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("closed", Integer, nullable=False, server_default="0"),
    Column("discovered", Integer, nullable=False, server_default="0"),
    Column("artifacts", Integer, nullable=False, server_default="0"),
    Column("recordings", Integer, nullable=False, server_default="0"),
    Column("unresolved", Integer, nullable=False, server_default="0"),
    Column("error", Text),
)
Index(
    "ix_reconcile_passes_tenant",
    reconcile_passes.c.tenant,
    reconcile_passes.c.outcome,
    reconcile_passes.c.started_at,
)


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One pass over one tenant's server, as kept."""

    tenant: str
    started_at: float
    finished_at: float
    since: float
    outcome: str
    closed: int = 0
    discovered: int = 0
    artifacts: int = 0
    recordings: int = 0
    unresolved: int = 0
    error: str | None = None


def record(conn: Connection, done: PassRecord) -> None:
    """Keep a pass, in the caller's transaction."""
    conn.execute(reconcile_passes.insert().values(**asdict(done)))


def last_completed(engine: Engine, tenant: str) -> float | None:
    """When the last completed pass over ``tenant``'s server started, or None."""
    query = select(func.max(reconcile_passes.c.started_at)).where(
        reconcile_passes.c.tenant == tenant, reconcile_passes.c.outcome == COMPLETED
    )
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else float(found)


def latest(engine: Engine, limit: int = 10) -> list[PassRecord]:
    """The newest passes, newest first."""
    columns = [reconcile_passes.c[name] for name in PassRecord.__slots__]
    query = select(*columns).order_by(reconcile_passes.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [PassRecord(**row._mapping) for row in conn.execute(query)]


def last_finished(engine: Engine) -> float | None:
    """When the last pass (over any tenant, whatever its outcome) finished, or None."""
    query = select(func.max(reconcile_passes.c.finished_at))
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    return None if found is None else float(found)


def newest_by_outcome(engine: Engine, tenants: Iterable[str]) -> dict[str, dict[str, PassRecord]]:
    """Each tenant's newest pass of each outcome, by tenant then outcome (none: left out)."""
    columns = [reconcile_passes.c[name] for name in PassRecord.__slots__]
    found: dict[str, dict[str, PassRecord]] = {}
    with engine.connect() as conn:
        for tenant in tenants:
            for outcome in (COMPLETED, FAILED):
                # One tenant's passes never overlap (the lease): the last started finished last.
                query = (
                    select(*columns)
                    .where(
                        reconcile_passes.c.tenant == tenant, reconcile_passes.c.outcome == outcome
                    )
                    .order_by(reconcile_passes.c.started_at.desc(), reconcile_passes.c.id.desc())
                    .limit(1)
                )
                row = conn.execute(query).first()
                if row is not None:
                    found.setdefault(tenant, {})[outcome] = PassRecord(**row._mapping)
    return found
