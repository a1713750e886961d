"""Command-line tools, run as ``flask --app app <command>``."""

from __future__ import annotations

from flask import Flask

from plugnmeet_webhooks.cli.db import db
from plugnmeet_webhooks.cli.deliveries import send, sign
from plugnmeet_webhooks.cli.inspect import events, report
from plugnmeet_webhooks.cli.invoices import invoice_group
from plugnmeet_webhooks.cli.privacy import forget_participant_command, purge
from plugnmeet_webhooks.cli.reconcile import reconcile
from plugnmeet_webhooks.cli.repair import rebuild_ledger, replay
from plugnmeet_webhooks.cli.workflows import outbox_group, rules


def init_app(app: Flask) -> None:
    """Register the commands on the app's ``flask`` command group."""
    commands = (db, sign, send, events, report, replay, rebuild_ledger, purge)
    for command in (
        *commands,
        forget_participant_command,
        rules,
        outbox_group,
        reconcile,
        invoice_group,
    ):
        app.cli.add_command(command)
