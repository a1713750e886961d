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
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from plugnmeet_webhooks.text import plain


class Fault(Enum):
    """What kind of database error it was."""

    TRANSIENT = "transient"  # a lock, a lost connection, a full disk, a refusal: it may pass
    DATA = "data"  # a value or size the database refuses: this data will never go in
    BUG = "bug"  # a wrong statement or schema, a broken constraint: fix the code, then replay


# SQLITE_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _PROTOCOL,
# _NOTADB: the file or its lock, not the statement (an operator's matter: 503 until fixed).
# sqlite3 calls "no such column" an OperationalError too, so the code decides.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})
# SQLITE_TOOBIG, _MISMATCH: the values. A broken constraint is the code's own doing (a bug).
_SQLITE_DATA = frozenset({18, 20})
# Connection, authorization, transaction rollback (serialization, deadlock), resources,
# operator intervention, system errors; a read-only standby, missing grants, a lock held
# too long.
_PG_TRANSIENT_CLASSES = frozenset({"08", "28", "40", "53", "57", "58"})
_PG_TRANSIENT_STATES = frozenset({"25006", "42501", "55P03", "55006"})
# Data exceptions, and the program limit an index row too large hits.
_PG_DATA_CLASSES = frozenset({"22"})
_PG_DATA_STATES = frozenset({"54000"})


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
        data = state[:2] in _PG_DATA_CLASSES or state in _PG_DATA_STATES
        return Fault.DATA if data else Fault.BUG
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Fault.TRANSIENT
    if isinstance(exc, DataError):  # refused before it reached the server (a NUL, say)
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
    text = plain(str(cause).splitlines()[0], 200) if str(cause) else ""
    code = sqlstate(exc)
    return f"{type(cause).__name__}{f' [{code}]' if code else ''}: {text}"
