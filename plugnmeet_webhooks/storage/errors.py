"""Tell database faults apart: one that may pass on a retry, data the database refuses, a bug.

The webhook route answers them 503 (the sender retries), 400 (retrying cannot help) and
500 (retried, and logged at ERROR as a bug to fix); a report never calls a query error an
outage.
"""

from __future__ import annotations

from enum import Enum

from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout


class Fault(Enum):
    """What kind of database error it was."""

    TRANSIENT = "transient"  # a lock, a lost connection, a full disk: it may pass
    DATA = "data"  # a value or size the database refuses: this data will never go in
    BUG = "bug"  # a wrong statement or schema: fix the code, then replay


# SQLITE_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _FULL, _CANTOPEN, _PROTOCOL: the file or
# its lock, not the statement. sqlite3 calls "no such column" an OperationalError too.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
# SQLITE_TOOBIG, _CONSTRAINT, _MISMATCH: the values.
_SQLITE_DATA = frozenset({18, 19, 20})
# Connection, transaction rollback (serialization, deadlock), resources, operator
# intervention, system errors; and a lock or object held too long.
_PG_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_PG_TRANSIENT_STATES = frozenset({"55P03", "55006"})
# Data exceptions, integrity constraints, program limits (an index row too large, say).
_PG_DATA_CLASSES = frozenset({"22", "23", "54"})


def sqlstate(exc: BaseException) -> str | None:
    """Return the database's own code for an error: a SQLSTATE, or SQLite's error name."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    return state if isinstance(state, str) else None


def classify(exc: SQLAlchemyError) -> Fault:
    """Say whether a database error may pass on a retry, is the data's fault, or is a bug."""
    orig = getattr(exc, "orig", None)
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        primary = sqlite_code & 0xFF
        if primary in _SQLITE_TRANSIENT:
            return Fault.TRANSIENT
        return Fault.DATA if primary in _SQLITE_DATA else Fault.BUG
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and len(state) == 5:
        if state[:2] in _PG_TRANSIENT_CLASSES or state in _PG_TRANSIENT_STATES:
            return Fault.TRANSIENT
        return Fault.DATA if state[:2] in _PG_DATA_CLASSES else Fault.BUG
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault.TRANSIENT
    if isinstance(exc, (DataError, IntegrityError)):  # refused before reaching the server
        return Fault.DATA
    # A driver error without a code is about the connection, not the statement.
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout, DisconnectionError)):
        return Fault.TRANSIENT
    return Fault.BUG


def is_transient(exc: SQLAlchemyError) -> bool:
    """Tell whether a database error may pass on a retry (lock, lost connection, timeout)."""
    return classify(exc) is Fault.TRANSIENT


def describe(exc: BaseException) -> str:
    """Name an error for a log line: its class, its code, the first line of its message."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).splitlines()[0][:200] if str(cause) else ""
    code = sqlstate(exc)
    return f"{type(cause).__name__}{f' [{code}]' if code else ''}: {text}"
