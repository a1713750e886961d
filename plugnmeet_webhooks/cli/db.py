"""The database schema: ``db check``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.repair import run_replay
from plugnmeet_webhooks.ledger.writes import is_empty
from plugnmeet_webhooks.storage.events import EventFilter, count_events
from plugnmeet_webhooks.storage.migrate import (
    replays_done,
    replays_due,
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
    upgrade_schema(engine, revision)
    rt.forget_schema_check()
    after, _ = schema_revisions(engine)
    if before == after:
        click.echo(f"Database schema already at revision {after}.")
    else:
        click.echo(f"Database schema upgraded from {before or 'empty'} to {after}.")
    due = replays_due(engine)
    stored = count_events(engine)
    if before != after and stored and is_empty(engine):
        # The ledger arrived with this upgrade: derive it from the events already stored.
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
            f"Applied {result.events} stored {' and '.join(due)} events again "
            f"({result.failed} failed)."
        )
    replays_done(engine, due)


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
        click.echo(
            f"The stored {' and '.join(due)} events are still to be applied again after an "
            "upgrade, so some figures follow the old rules: run 'flask --app app db upgrade'."
        )
