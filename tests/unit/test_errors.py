"""Database errors told apart: transient (503), refused data (400), bugs (500)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError

from plugnmeet_webhooks.storage.committer import CommitTimeout
from plugnmeet_webhooks.storage.errors import Fault, classify, describe, sqlstate


def _sqlite(code: int, name: str, cls: type = sqlite3.OperationalError) -> OperationalError:
    orig = cls("sqlite says no")
    orig.sqlite_errorcode, orig.sqlite_errorname = code, name
    return OperationalError("INSERT", {}, orig)


class _PgError(Exception):
    def __init__(self, state: str) -> None:
        super().__init__(f"state {state}")
        self.sqlstate = state


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (_sqlite(5, "SQLITE_BUSY"), Fault.TRANSIENT),
        (_sqlite(13, "SQLITE_FULL"), Fault.TRANSIENT),
        (_sqlite(2067, "SQLITE_CONSTRAINT_UNIQUE", sqlite3.IntegrityError), Fault.BUG),
        (_sqlite(11, "SQLITE_CORRUPT"), Fault.TRANSIENT),
        (_sqlite(20, "SQLITE_MISMATCH"), Fault.DATA),
        (_sqlite(18, "SQLITE_TOOBIG"), Fault.DATA),
        (_sqlite(1, "SQLITE_ERROR"), Fault.BUG),  # "no such table", a syntax error
        (OperationalError("SELECT", {}, _PgError("08006")), Fault.TRANSIENT),
        (OperationalError("SELECT", {}, _PgError("40P01")), Fault.TRANSIENT),  # deadlock
        (OperationalError("SELECT", {}, _PgError("55P03")), Fault.TRANSIENT),  # lock timeout
        (OperationalError("INSERT", {}, _PgError("54000")), Fault.DATA),  # index row too big
        (DataError("INSERT", {}, _PgError("22021")), Fault.DATA),
        (IntegrityError("INSERT", {}, _PgError("23502")), Fault.BUG),  # our own NOT NULL
        (OperationalError("INSERT", {}, _PgError("25006")), Fault.TRANSIENT),  # a standby
        (ProgrammingError("INSERT", {}, _PgError("42501")), Fault.TRANSIENT),  # no grant
        (OperationalError("SELECT", {}, _PgError("54001")), Fault.BUG),  # too complex
        (ProgrammingError("SELECT", {}, _PgError("42P01")), Fault.BUG),  # no such table
        (
            OperationalError("COMMIT", {}, Exception("server closed the connection")),
            Fault.TRANSIENT,
        ),
        (DataError("INSERT", {}, Exception("text cannot contain NUL")), Fault.DATA),
        (CommitTimeout("the writer did not answer"), Fault.TRANSIENT),
        (ProgrammingError("SELECT", {}, Exception("no code")), Fault.BUG),
    ],
)
def test_each_error_has_its_kind(error, fault):
    assert classify(error) is fault


def test_the_log_names_the_code_and_the_first_line_only():
    error = _sqlite(19, "SQLITE_CONSTRAINT", sqlite3.IntegrityError)
    assert sqlstate(error) == "SQLITE_CONSTRAINT"
    assert describe(error) == "IntegrityError [SQLITE_CONSTRAINT]: sqlite says no"
    pg = ProgrammingError("SELECT", {}, _PgError("42P01"))
    assert describe(pg) == "_PgError [42P01]: state 42P01"
