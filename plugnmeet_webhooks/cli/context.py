"""What a command works with: the app's runtime, with logging set up, and its database."""

from __future__ import annotations

import logging

import click
from sqlalchemy import Engine

from plugnmeet_webhooks.logs import configure_logging
from plugnmeet_webhooks.runtime import Runtime, current
from plugnmeet_webhooks.storage.migrate import SchemaBehind


def runtime() -> Runtime:
    """Return the app's runtime; on a plain ``flask`` run, send log lines where the server does."""
    rt = current()
    if not logging.getLogger().handlers:  # nobody (a test harness, say) has set logging up
        configure_logging(rt.settings)
    return rt


def database() -> Engine:
    """Return the engine of a current schema, or end the command saying what to run."""
    try:
        return runtime().database()
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
