"""The database schema: ``db check``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import Connection

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.repair import run_replay
from plugnmeet_webhooks.ledger.writes import is_empty
from plugnmeet_webhooks.storage.events import EventFilter, has_events
from plugnmeet_webhooks.storage.migrate import (
    EVERY_EVENT,
    replay_due,
    replays_done,
    replays_due,
    revision_of,
    schema_revisions,
    upgrade_schema,
)


@click.group("db")
def db() -> None:
    """Inspect or upgrade the database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Upgrade the database schema to REVISION (default: the newest)."""
    rt = runtime()
    engine = rt.engine
    before, _ = schema_revisions(engine)
    fill = False

    def ledger_to_fill(conn: Connection) -> None:
        # The ledger arrived with this upgrade: it is filled from the events already stored,
        # and this is recorded with the schema change, so a fill cut short is taken up again.
        nonlocal fill
        fill = revision_of(conn) != before and has_events(conn) and is_empty(conn)
        if fill:
            replay_due(conn, EVERY_EVENT)

    upgrade_schema(engine, revision, then=ledger_to_fill)
    rt.forget_schema_check()
    after, _ = schema_revisions(engine)
    if before == after:
        click.echo(f"Database schema already at revision {after}.")
    else:
        click.echo(f"Database schema upgraded from {before or 'empty'} to {after}.")
    with engine.connect() as conn:
        stored = has_events(conn)
    due = replays_due(engine)
    if fill or (stored and EVERY_EVENT in due):
        if not fill:
            click.echo("An earlier upgrade did not finish filling the ledger; resuming.")
        result = run_replay(EventFilter(), "Filling the ledger")
        click.echo(
            f"Filled the ledger from {result.events} stored events ({result.failed} failed)."
        )
    elif stored and due:
        # Tables an upgrade reshaped: apply their events again under the new rules. A
        # replay that was cut short is still due, and is run again from the start.
        if before == after:
            click.echo("An earlier upgrade did not finish applying its events again; resuming.")
        result = run_replay(EventFilter(names=due), f"Applying {', '.join(due)} again")
        click.echo(
            f"Applied {result.events} stored {_listed(due)} events again ({result.failed} failed)."
        )
    replays_done(engine, due)


def _listed(names: tuple[str, ...]) -> str:
    """Names in a sentence: ``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, (", ".join(names[:-1]), names[-1]))) if names else ""


@db.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's schema revision and the one this version needs."""
    revision, head = schema_revisions(runtime().engine)
    state = "up to date" if revision == head else "run 'flask --app app db upgrade'"
    click.echo(f"database: {revision or 'empty'}  this version: {head}  ({state})")


@db.command("check")
@with_appcontext
def db_check() -> None:
    """Check the database: make the schema in an empty one, or say what to run.

    Gunicorn runs this once before it starts its workers.
    """
    engine = database()
    revision, _ = schema_revisions(engine)
    click.echo(f"Database schema at revision {revision}, as this version needs.")
    if due := replays_due(engine):
        which = "" if EVERY_EVENT in due else f" {_listed(due)}"
        click.echo(
            f"The stored{which} events are still to be applied again after an upgrade, so "
            "some figures are missing or follow the old rules: run 'flask --app app db upgrade'."
        )
