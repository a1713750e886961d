"""Fixtures: an app on a temporary database, its client and CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pytest

from app import create_app
from config import Settings
from plugnmeet_webhooks import runtime
from tests.support import postgres
from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET, SECRET
from tests.support.plugnmeet_api import PlugNmeetApi


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own PNM_* settings out of the tests."""
    for name in list(os.environ):
        if name.startswith("PNM_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_server() -> str | None:
    """Return the PostgreSQL URL the tests may use, or None with the reason printed once."""
    return postgres.available()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_server):
    """Run the test once on a SQLite file and once on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    if postgres_server is None:
        pytest.skip(postgres.skip_reason())
    with postgres.fresh_schema(postgres_server) as url:
        yield url


@pytest.fixture
def sqlite_only(database_url) -> None:
    """Skip on PostgreSQL: the test is about SQLite's own settings."""
    if not database_url.startswith("sqlite"):
        pytest.skip("about SQLite only")


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
    runtime.of(application).close()


@pytest.fixture
def make_app(settings: Settings):
    """Make apps from the test's settings with some of them changed; each is closed after."""
    made = []

    def make(**changes):
        application = create_app(replace(settings, **changes))
        made.append(application)
        return application

    yield make
    for application in made:
        runtime.of(application).close()


@pytest.fixture
def app_runtime(app) -> runtime.Runtime:
    """The app's runtime: its registry takes a test's own handlers."""
    return runtime.of(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def plugnmeet() -> Iterator[PlugNmeetApi]:
    """A local plugNmeet API knowing the corpus session as ended, signed with the tests' pair;
    it must have seen no bad signature by the end of the test."""
    with PlugNmeetApi(api_key=KEY, secret=SECRET) as api:
        api.load_corpus_session("ended")
        yield api
        assert api.bad_signatures == 0
