"""What a command works with: the app's runtime, with logging set up, and its database."""

from __future__ import annotations

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.runtime import Runtime, current
from plugnmeet_webhooks.storage.errors import describe
from plugnmeet_webhooks.storage.migrate import SchemaBehind


def runtime() -> Runtime:
    """Return the app's runtime; on a plain ``flask`` run, send log lines where the server does."""
    rt = current()
    rt.ensure_logging()
    return rt


def database() -> Engine:
    """Return the engine of a current schema, or end the command saying what to do."""
    try:
        return runtime().database()
    except SchemaBehind as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot open the database named by PNM_DATABASE_URL ({describe(exc)}); "
            "check that it is running and that the URL is right."
        ) from None
