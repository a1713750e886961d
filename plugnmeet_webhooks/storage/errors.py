"""Tell a database fault that may pass on a retry from one that will not."""

from __future__ import annotations

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

# SQLITE_BUSY, _LOCKED, _NOMEM, _READONLY, _IOERR, _FULL, _CANTOPEN, _PROTOCOL: the file or
# its lock, not the statement. sqlite3 calls "no such column" an OperationalError too.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})


def is_transient(exc: SQLAlchemyError) -> bool:
    """Tell whether a database error may pass on a retry (lock, lost connection, timeout)."""
    sqlite_code = getattr(getattr(exc, "orig", None), "sqlite_errorcode", None)
    if sqlite_code is not None:
        return (sqlite_code & 0xFF) in _SQLITE_TRANSIENT
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    # Outside the driver, only a pool that stays empty or a lost connection will pass.
    return isinstance(exc, (PoolTimeout, DisconnectionError))
