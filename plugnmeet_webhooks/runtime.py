"""What every request and command of one process shares: the settings and the engine."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import Engine

from config import Settings
from plugnmeet_webhooks.storage.commit import GroupCommitter


@dataclass(frozen=True, slots=True)
class Runtime:
    """Built once per process by the app factory."""

    settings: Settings
    engine: Engine
    committer: GroupCommitter
    schema_error: str | None = None

    def close(self) -> None:
        """Stop the writer and close every database connection (tests, shutdown)."""
        self.committer.close()
        self.engine.dispose()


def current() -> Runtime:
    """Return the runtime of the app handling the current request or command."""
    return current_app.extensions["pnm"]
