"""The PostgreSQL server the tests run against, and a throw-away schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_state: dict[str, str | None] = {}


def server_url() -> str:
    """Return the PostgreSQL URL for tests (``PNM_TEST_POSTGRES_URL``, else the local default)."""
    return os.environ.get("PNM_TEST_POSTGRES_URL", "").strip() or DEFAULT_URL


def available() -> str | None:
    """Return the server URL if a connection works, else None (the reason is kept)."""
    if "url" not in _state:
        import psycopg

        url = server_url()
        try:
            psycopg.connect(url, connect_timeout=3).close()
            _state["url"], _state["reason"] = url, None
        except psycopg.Error as exc:
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            _state["url"] = None
            _state["reason"] = f"PostgreSQL not reachable at {url} ({first_line})"
    return _state["url"]


def skip_reason() -> str:
    """Say in one line why the PostgreSQL tests are skipped (or fail, where CI requires them)."""
    reason = _state.get("reason") or "PostgreSQL not reachable"
    if os.environ.get("PNM_TEST_REQUIRE_POSTGRES"):
        import pytest

        pytest.fail(f"{reason}; PNM_TEST_REQUIRE_POSTGRES is set, so this is an error")
    return reason


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """Create an empty schema, yield a URL whose connections use it, then drop it."""
    import psycopg

    name = f"pnm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
