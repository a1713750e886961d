"""``reconcile``: ask plugNmeet's API what the lost deliveries would have said."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.output import as_json, table
from plugnmeet_webhooks.reconcile.reconciler import Report, describe_failure
from plugnmeet_webhooks.reconcile.worker import PassBusy, run_pass
from plugnmeet_webhooks.storage.errors import describe


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; write it as 2026-01-31.") from None
    return day.timestamp()


def _text(report: Report) -> str:
    totals = report.totals()
    verb = "would be" if report.dry_run else "were"
    lines = []
    rows = [
        [p.tenant, r.kind, r.room_id or "-", r.room_sid, r.detail]
        for p in report.passes
        for r in p.repairs
    ]
    if rows:
        lines += [table(["tenant", "repair", "room", "session", "detail"], rows), ""]
    unresolved = [
        [p.tenant, u.room_id or "-", u.room_sid, u.reason]
        for p in report.passes
        for u in p.unresolved
    ]
    if unresolved:
        lines += ["Could not resolve:", table(["tenant", "room", "session", "why"], unresolved), ""]
    lines.append(
        f"Sessions closed: {totals['sessions_closed']}, discovered: "
        f"{totals['sessions_discovered']}; artifacts added: {totals['artifacts_added']}, "
        f"recordings added: {totals['recordings_added']} ({verb} changed); "
        f"unresolved: {totals['unresolved']}."
    )
    for done in report.passes:
        if done.error is None:
            since = datetime.fromtimestamp(done.since, UTC).strftime("%Y-%m-%d %H:%M")
            lines.append(
                f"{done.tenant}: sessions that ended since {since} UTC looked at; "
                f"{done.live} open session(s) still running."
            )
    return "\n".join(lines)


@click.command("reconcile")
@click.option(
    "--since",
    "since_day",
    metavar="YYYY-MM-DD",
    help="Look at sessions that ended from this day (UTC) on; default: since the "
    "last completed pass, or 7 days.",
)
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@with_appcontext
def reconcile(since_day: str | None, dry_run: bool, fmt: str) -> None:
    """Repair the ledger from plugNmeet's API: close sessions whose end was lost, add sessions,
    AI usage and recordings whose deliveries were all lost."""
    since = _since(since_day)
    rt = runtime()
    if not rt.settings.plugnmeet_servers:
        raise click.ClickException(
            "no plugNmeet server to ask: set PNM_PLUGNMEET_URL to the server's address (or "
            "plugnmeet_url lines in PNM_API_KEYS_FILE)."
        )
    engine = database()
    reconciler = rt.reconciler()
    try:
        if dry_run:
            report = reconciler.run(since=since, dry_run=True)
        else:
            done = run_pass(engine, reconciler, since=since)
            assert done is not None  # no condition was given
            report = done
    except PassBusy as exc:
        raise click.ClickException(f"{exc}.") from None
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"the database failed during the pass ({describe(exc)}); what was stored stays, "
            "and the next pass finishes the rest."
        ) from None
    if not dry_run:
        rt.count_pass(report)
    click.echo(as_json(report.as_dict()) if fmt == "json" else _text(report))
    if report.failed:
        for failed in report.failed:
            click.echo(f"error: {describe_failure(failed)}; nothing of it was changed.", err=True)
        sys.exit(1)
