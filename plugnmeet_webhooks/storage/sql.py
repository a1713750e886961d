"""SQL plumbing shared by the events table and the ledger: one metadata, compiled statements."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Dialect, MetaData
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError

metadata = MetaData()

_NAMED = {
    "sqlite": (sqlite, sqlite.dialect(paramstyle="named")),
    "postgresql": (postgresql, postgresql.psycopg.dialect()),
}
Build = Callable[[Any], Any]
"""Build a statement, given the dialect module (for its ``insert`` with ``ON CONFLICT``)."""

_compiled: dict[tuple[str, Build], str] = {}


def compiled(dialect: Dialect, build: Build) -> str:
    """Return SQL text with named parameters for a statement, built and compiled once.

    The request path then runs plain SQL and pays for no statement construction or cache
    look-up beyond this one dictionary.
    """
    key = (dialect.name, build)
    text = _compiled.get(key)
    if text is None:
        module, named = _NAMED[dialect.name]
        text = str(build(module).compile(dialect=named))
        _compiled[key] = text
    return text


def execute(conn: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """Run compiled SQL on the driver's own cursor, in ``conn``'s transaction.

    The write path runs a few fixed statements per event; going to the cursor skips
    SQLAlchemy's per-call execution set-up. Driver errors come back as SQLAlchemy's own
    exception classes, and a lost connection is invalidated, as SQLAlchemy itself would.
    """
    dbapi = conn.dialect.loaded_dbapi
    cursor = None
    try:
        driver = conn.connection.driver_connection
        assert driver is not None  # a checked-out connection has its driver's connection
        cursor = driver.cursor()
        cursor.execute(sql, params)
    except OverflowError as exc:  # sqlite3 refuses an integer over 64 bits as it binds it
        raise DataError(sql, None, exc, hide_parameters=True) from exc
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc  # fmt: skip
    return cursor


def fetch_all(conn: Connection, statement: Any) -> list[Any]:
    """Run a query on the driver's own cursor and return its rows as plain tuples.

    For reports that read many rows: the driver builds its tuples in C, where SQLAlchemy's
    rows cost a Python call each.
    """
    named = _NAMED[conn.dialect.name][1]
    query = statement.compile(dialect=named)
    return list(execute(conn, str(query), query.params).fetchall())
