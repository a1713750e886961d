"""Personal data: ``purge`` old raw bodies, ``forget-participant`` a person."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.privacy import forget_participant
from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.events import EventFilter, count_matching
from plugnmeet_webhooks.storage.retention import count_prunable, cutoff, prune


@click.command("purge")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Prune bodies older than this many days (default: PNM_RETENTION_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only say how many bodies would go.")
@with_appcontext
def purge(days: int | None, dry_run: bool) -> None:
    """Remove the raw bodies of old events and outbox messages; ledger figures stay.

    Sent messages of that age are deleted; other messages keep their row without a body
    (one never sent is dead). The running service does this by itself once an hour when
    PNM_RETENTION_DAYS is set. A pruned event can no longer be replayed.
    """
    days = days or runtime().settings.retention_days
    if days is None:
        raise click.UsageError("give --days, or set PNM_RETENTION_DAYS.")
    engine = database()
    before = cutoff(days)
    day = datetime.fromtimestamp(before, UTC).strftime("%Y-%m-%d %H:%M UTC")
    due = count_prunable(engine, before)
    messages = outbox.count_prunable(engine, before)
    if dry_run:
        click.echo(f"{due} events received before {day} would lose their raw bodies.")
        click.echo(f"{messages} outbox messages made before {day} would go or lose their bodies.")
        return
    with click.progressbar(length=due, label="Pruning", show_pos=True, file=sys.stderr) as bar:
        pruned, messages = prune(engine, before, progress=bar.update)
    click.echo(f"Pruned the raw bodies of {pruned} events received before {day}.")
    click.echo(f"Pruned {messages} outbox messages made before {day}.")


@click.command("forget-participant")
@click.argument("identity")
@click.option("--tenant", help="Only in this tenant's data (default: every tenant's).")
@click.confirmation_option(
    prompt="Replace this participant's identity and names everywhere with a pseudonym?"
)
@with_appcontext
def forget_participant_command(identity: str, tenant: str | None) -> None:
    """Remove a participant's identity and names from stored bodies, the ledger and the outbox.

    IDENTITY is the participant's identity (the user id plugNmeet sends). Their minutes,
    usage and costs stay, under a pseudonym; a workflow message sent again carries the
    pseudonym. It cannot be undone.
    """
    engine = database()
    total = count_matching(engine, EventFilter())
    with click.progressbar(length=total, label="Rewriting", show_pos=True, file=sys.stderr) as bar:
        done = forget_participant(engine, identity, tenant=tenant, progress=bar.update)
    click.echo(
        f"Forgotten as {done.pseudonym}: {done.events} stored events rewritten, "
        f"{done.attendance_rows} attendance and {done.usage_rows} usage rows anonymised, "
        f"{done.messages} outbox messages rewritten."
    )
