"""Durable storage of verified events, on SQLAlchemy Core (SQLite by default, PostgreSQL too).

Every verified event is inserted with its raw body and receipt time and committed before
the delivery is acknowledged. Redeliveries are absorbed by a unique ``dedupe_key`` and
``INSERT ... ON CONFLICT DO NOTHING``, which stays exactly-once across workers and hosts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    make_url,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from normalize import plain, shown

log = logging.getLogger(__name__)

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", Integer().with_variant(BigInteger(), "postgresql"), primary_key=True),
    Column("dedupe_key", String(200), nullable=False, unique=True),
    Column("event_id", String(200)),
    Column("event", String(200), nullable=False),
    Column("room_id", Text),
    Column("room_sid", Text),
    Column("created_at", BigInteger),
    Column("received_at", Float, nullable=False),
    Column("api_key", Text, nullable=False),
    Column("remote_addr", Text),
    Column("body_sha256", String(64), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("handler_status", String(16), nullable=False, server_default="ok"),
    Column("handler_error", Text),
)
Index("ix_events_event", events.c.event)
Index("ix_events_room_id", events.c.room_id)
Index("ix_events_received_at", events.c.received_at)
Index("ix_events_handler_status", events.c.handler_status)

StorageError = SQLAlchemyError
"""Raised when the database cannot take a write or a read; the route answers 503."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the route knows of a delivery once it is verified and parsed."""

    dedupe_key: str
    event_id: str | None
    event: str
    room_id: str | None
    room_sid: str | None
    created_at: int | None
    received_at: float
    api_key: str
    remote_addr: str | None
    body_sha256: str
    body: bytes
    handler_status: str = "ok"
    handler_error: str | None = None


SUPPORTED_BACKENDS = ("sqlite", "postgresql")


class UnsupportedDatabase(ValueError):
    """``PNM_DATABASE_URL`` names a database this service does not run on."""


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
    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy raises ArgumentError and ValueError alike
        raise UnsupportedDatabase(
            "PNM_DATABASE_URL is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host/dbname."
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise UnsupportedDatabase(
            f"PNM_DATABASE_URL names a {backend} database; use sqlite:///path/to/file.db "
            "or postgresql://user@host/dbname."
        )
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what we ship
        # Bound every wait: a held lock ends in LockNotAvailable (answered 503), and a server
        # that stops answering is noticed by TCP instead of hanging a worker.
        options = parsed.query.get("options", "")
        options = options if isinstance(options, str) else " ".join(options)
        milliseconds = int(timeout * 1000)
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
    engine = create_engine(parsed, hide_parameters=True, connect_args={"timeout": timeout})
    _tune_sqlite(engine, busy_timeout_ms=int(timeout * 1000))
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
    """Open a connection whose transactions will write (kept open by a writer thread)."""
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


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x706E6D  # any constant shared by every receiver on one database


class SchemaBehind(RuntimeError):
    """The database was made by an older version; the message says how to upgrade it."""


def _alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """Return the database's schema revision (None for an empty database) and this code's."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, str(head)


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision``; several processes may call this at once."""
    from alembic import command

    with write_transaction(engine) as conn:
        # SQLite: the transaction began with BEGIN IMMEDIATE, so migrations run one at a time.
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        command.upgrade(_alembic_config(conn), revision)


def prepare_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse a database an older version made."""
    current, head = schema_revisions(engine)
    if current == head:
        return
    if current is None:
        upgrade_schema(engine)
        return
    raise SchemaBehind(
        f"the database schema is at revision {current} and this version needs {head}; "
        "run 'flask --app app db upgrade' once, then start the service again."
    )


_NAMED = {
    "sqlite": (sqlite, sqlite.dialect(paramstyle="named")),
    "postgresql": (postgresql, postgresql.psycopg.dialect()),
}
_compiled: dict[tuple[str, str], str] = {}


def compiled(dialect: Dialect, name: str, build: Callable[[Any], Any]) -> str:
    """Return SQL text with named parameters for a statement, built and compiled once.

    ``build`` gets the dialect module (for its ``insert`` with ``ON CONFLICT``); the request
    path then runs plain SQL and pays for no statement construction or cache look-up.
    """
    key = (dialect.name, name)
    text = _compiled.get(key)
    if text is None:
        module, named = _NAMED[dialect.name]
        text = str(build(module).compile(dialect=named))
        _compiled[key] = text
    return text


_EVENT_COLUMNS = [c.name for c in events.columns if c.name != "id"]


def _event_insert(module: Any) -> Any:
    statement = module.insert(events).values({c: bindparam(c) for c in _EVENT_COLUMNS})
    return statement.on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(events.c.id)


def execute(conn: Connection, sql: str, params: Mapping[str, Any]) -> Any:
    """Run compiled SQL on the driver's own cursor, in ``conn``'s transaction.

    The write path runs a few fixed statements per event; going to the cursor skips
    SQLAlchemy's per-call execution set-up. Driver errors come back as SQLAlchemy's own
    exception classes, and a lost connection is invalidated, as SQLAlchemy itself would.
    """
    dbapi = conn.dialect.loaded_dbapi
    cursor = None
    try:
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(sql, params)
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, dbapi.Error, hide_parameters=True, connection_invalidated=lost,
            dialect=conn.dialect,
        ) from exc  # fmt: skip
    return cursor


def insert_event(conn: Connection, stored: StoredEvent) -> int | None:
    """Insert the event unless its dedupe key is known; return its row id, or None if known."""
    params = {c: getattr(stored, c) for c in _EVENT_COLUMNS}
    row = execute(conn, compiled(conn.dialect, "event", _event_insert), params).fetchone()
    return None if row is None else row[0]


def mark_failed(conn: Connection, row_id: int, error: str) -> None:
    """Record that the handler of a stored event raised."""
    conn.execute(
        events.update()
        .where(events.c.id == row_id)
        .values(handler_status="failed", handler_error=error[:4000])
    )


def _failure(exc: BaseException) -> str:
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line}"[:4000]


Handle = Callable[[Connection], None]


def _store_one(conn: Connection, stored: StoredEvent, handle: Handle) -> str:
    row_id = insert_event(conn, stored)
    if row_id is None:
        return "duplicate"
    try:
        handle(conn)
    except SQLAlchemyError:
        raise
    except Exception as exc:  # handlers only plan before they write: nothing to undo
        label, key = shown(stored.event), plain(stored.dedupe_key)
        log.exception("handler for %s event %s failed", label, key)
        mark_failed(conn, row_id, _failure(exc))
        return "handler_failed"
    return "accepted"


class _EventFailed(Exception):
    """A statement of one event failed (not BEGIN or COMMIT); ``cause`` says how."""

    def __init__(self, cause: SQLAlchemyError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _store_all(conn: Connection, items: list[tuple[StoredEvent, Handle]]) -> list[str]:
    outcomes = []
    for stored, handle in items:
        try:
            outcomes.append(_store_one(conn, stored, handle))
        except SQLAlchemyError as exc:
            raise _EventFailed(exc) from exc
    return outcomes


Outcome = str | BaseException
"""``accepted``, ``duplicate``, ``handler_failed``, or the error that kept it from storage."""


def _store_alone(
    engine: Engine, item: tuple[StoredEvent, Handle], conn: Connection | None
) -> Outcome:
    """Store one event in its own transaction; a failing ledger write marks it failed."""
    stored = item[0]
    try:
        with write_transaction(engine, conn) as tx:
            return _store_all(tx, [item])[0]
    except _EventFailed as failure:
        if is_transient(failure.cause):
            return failure.cause
        # Its ledger write failed and took the transaction with it: keep the event alone.
        log.error(
            "ledger write for %s event %s failed: %s",
            shown(stored.event), plain(stored.dedupe_key), _failure(failure.cause),
        )  # fmt: skip
        failed = replace(stored, handler_status="failed", handler_error=_failure(failure.cause))
        try:
            with write_transaction(engine, conn) as tx:
                return "handler_failed" if insert_event(tx, failed) else "duplicate"
        except SQLAlchemyError as exc:
            return exc
    except SQLAlchemyError as exc:
        return exc


def store_batch(
    engine: Engine, items: list[tuple[StoredEvent, Handle]], conn: Connection | None = None
) -> list[Outcome]:
    """Store events and run their handlers in one transaction: one commit for them all.

    Each outcome is ``accepted``, ``duplicate``, ``handler_failed`` (stored all the same,
    marked failed, for a later ``replay --failed``), or the database error that kept that
    event out (its delivery is answered 503 and retried). Events are taken in room order, so
    batches of two workers lock shared rows in one order and cannot deadlock. When the
    batch fails as a whole, each event is tried again alone: one bad or unlucky event fails
    only its own delivery.
    """
    order = sorted(range(len(items)), key=lambda i: (items[i][0].room_sid or "", i))
    ordered = [items[i] for i in order]
    try:
        with write_transaction(engine, conn) as tx:
            results: list[Outcome] = list(_store_all(tx, ordered))
    except (_EventFailed, SQLAlchemyError):
        results = [_store_alone(engine, item, conn) for item in ordered]
    outcomes: list[Outcome] = [""] * len(items)
    for position, index in enumerate(order):
        outcomes[index] = results[position]
    return outcomes


@dataclass
class ReplayResult:
    """How a replay went."""

    events: int = 0
    failed: int = 0
    repaired: int = 0


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which stored events a replay takes."""

    since: float | None = None
    event_key: str | None = None
    failed_only: bool = False

    def apply(self, query: Any) -> Any:
        """Narrow ``query`` over the events table to the matching events (all indexed)."""
        if self.since is not None:
            query = query.where(events.c.received_at >= self.since)
        if self.event_key is not None:
            query = query.where(events.c.dedupe_key == self.event_key)
        if self.failed_only:
            query = query.where(events.c.handler_status == "failed")
        return query


def count_matching(engine: Engine, which: EventFilter) -> int:
    """Count the events a replay with this filter would take."""
    with engine.connect() as conn:
        return conn.execute(which.apply(select(func.count()).select_from(events))).scalar_one()


ReplayHandle = Callable[[Connection, bytes, str, float], None]


def _replay_batch(
    conn: Connection, rows: list[Any], handle: ReplayHandle, *, careful: bool
) -> ReplayResult:
    """Handle a batch of stored events; ``careful`` isolates each one in a savepoint."""
    result = ReplayResult(events=len(rows))
    for row in rows:
        savepoint = conn.begin_nested() if careful else None
        error = None
        try:
            handle(conn, row.body, row.dedupe_key, row.received_at)
        except SQLAlchemyError as exc:
            if savepoint is None or is_transient(exc):
                raise
            savepoint.rollback()
            error = _failure(exc)
        except Exception as exc:  # handlers only plan before they write: nothing to undo
            error = _failure(exc)
        else:
            if savepoint is not None:
                savepoint.commit()
        if error is not None:
            log.error("replay of %s event %s failed: %s", row.event, plain(row.dedupe_key), error)
            result.failed += 1
            mark_failed(conn, row.id, error)
        elif row.handler_status != "ok":
            result.repaired += 1
            conn.execute(
                events.update()
                .where(events.c.id == row.id)
                .values(handler_status="ok", handler_error=None)
            )
    return result


def replay_events(
    engine: Engine,
    handle: ReplayHandle,
    which: EventFilter = EventFilter(),
    *,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run ``handle`` again over stored events, oldest first, one transaction a batch.

    A batch whose ledger write fails is run again one event at a time, each in a savepoint,
    so one bad event is marked failed without holding back the others.
    """
    query = which.apply(
        select(
            events.c.id, events.c.event, events.c.dedupe_key, events.c.body,
            events.c.received_at, events.c.handler_status,
        )
    )  # fmt: skip
    total = ReplayResult()
    last_id = 0
    while True:
        page = query.where(events.c.id > last_id).order_by(events.c.id).limit(batch_size)
        try:
            with write_transaction(engine) as conn:
                rows = conn.execute(page).all()
                done = _replay_batch(conn, rows, handle, careful=False)
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise
            with write_transaction(engine) as conn:
                rows = conn.execute(page).all()
                done = _replay_batch(conn, rows, handle, careful=True)
        if not rows:
            return total
        total.events += done.events
        total.failed += done.failed
        total.repaired += done.repaired
        last_id = rows[-1].id
        if progress is not None:
            progress(len(rows))


def count_events(engine: Engine) -> int:
    """Return how many events are stored."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(events)).scalar_one()


def list_events(engine: Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """Return the newest stored events, without their bodies."""
    columns = [c for c in events.c if c.name != "body"]
    query = select(*columns).order_by(events.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def now() -> float:
    """Return the receipt time stamp used for stored events (unix seconds)."""
    return time.time()
