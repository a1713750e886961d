"""Fixtures: an app on a temporary database, its client and CLI runner."""

from __future__ import annotations

import os

import pytest
from helpers import KEY, OTHER_KEY, OTHER_SECRET, SECRET

from app import create_app
from config import Settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own PNM_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("PNM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        api_keys={KEY: SECRET, OTHER_KEY: OTHER_SECRET},
        database_url=database_url,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def app(settings: Settings):
    application = create_app(settings)
    yield application
    application.extensions["pnm"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
