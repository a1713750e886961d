"""Open the database: SQLite with WAL, ``synchronous=FULL`` and write locks; PostgreSQL with
bounded waits. Transactions that write start here."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout

__all__ = ["PoolTimeout"]


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, *, timeout: float = 5.0) -> Engine:
    """Create the engine for ``url``; SQLite gets WAL, ``synchronous=FULL`` and write locks.

    ``timeout`` bounds how long a request waits for a lock or a connection before the
    delivery is answered 503 (and retried by the sender).
    """
    parsed = make_url(url)  # the settings have checked that it names SQLite or PostgreSQL
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what we ship
        # Bound every wait: a held lock ends in LockNotAvailable (answered 503), and a server
        # that stops answering is noticed by TCP instead of hanging a worker.
        options = parsed.query.get("options", "")
        options = options if isinstance(options, str) else " ".join(options)
        milliseconds = max(1, round(timeout * 1000))  # 0 would mean: wait for ever
        return create_engine(
            parsed.difference_update_query(["options"]),
            hide_parameters=True,
            pool_pre_ping=True,
            pool_timeout=timeout,
            connect_args={
                "connect_timeout": max(1, round(timeout)),
                "options": f"{options} -c lock_timeout={milliseconds}".strip(),
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": max(milliseconds, 1000),
            },
        )
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The file holds names and user ids: only its owner reads it. SQLite gives the WAL
        # and shared-memory files the same mode when it makes them.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = create_engine(parsed, hide_parameters=True, connect_args={"timeout": timeout})
    _tune_sqlite(engine, busy_timeout_ms=max(1, round(timeout * 1000)))
    return engine


_WRITE = "pnm_write"


def _tune_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # 8 MiB of page cache (the default is 2): with a million events, the unique indexes
        # the inserts walk stay in memory instead of being read again on every commit.
        cursor.execute("PRAGMA cache_size=-8192")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front, so two workers never both read, then both
        # write; readers need no lock under WAL.
        immediate = connection.get_execution_options().get(_WRITE)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Connection:
    """Open a connection whose transactions will write (kept open by the group committer)."""
    conn = engine.connect()
    conn.execution_options(**{_WRITE: True})
    return conn


@contextmanager
def write_transaction(engine: Engine, conn: Connection | None = None) -> Iterator[Connection]:
    """Open a transaction that will write, on ``conn`` if given; commit, or roll back on error."""
    if conn is not None:
        with conn.begin():
            yield conn
        return
    with writer(engine) as own, own.begin():
        yield own
