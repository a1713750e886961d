"""Reconciliation under a real gunicorn: the background pass repairs what was lost, unasked."""

from __future__ import annotations

import sqlite3
import time

import pytest

from plugnmeet_webhooks.cli.deliveries import post
from tests.support.gunicorn_server import gunicorn
from tests.support.helpers import CORPUS, KEY, SECRET
from tests.support.plugnmeet_api import PlugNmeetApi
from validation import sign

pytestmark = pytest.mark.slow

LOST = ("room_finished", "session_ended")


def _session(database: str) -> tuple[int | None, str | None]:
    with sqlite3.connect(database) as conn:
        row = conn.execute("SELECT billable_minutes, end_source FROM sessions").fetchone()
    return (None, None) if row is None else row


def test_the_background_pass_closes_a_session_whose_end_was_lost(tmp_path):
    database = tmp_path / "gunicorn.db"
    with (
        PlugNmeetApi(api_key=KEY, secret=SECRET) as api,
        gunicorn(
            tmp_path,
            workers=2,
            PNM_DATABASE_URL=f"sqlite:///{database}",
            PNM_PLUGNMEET_URL=api.url,
            PNM_RECONCILE_INTERVAL="10",
        ) as server,
    ):
        api.load_corpus_session("ended")
        for path in CORPUS:
            if not path.stem.endswith(LOST):  # plugNmeet gave up on these
                body = path.read_bytes()
                assert post(server.url, body, sign(body, KEY, SECRET))[0] == 200
        assert _session(str(database)) == (None, None)
        deadline = time.monotonic() + 60
        while _session(str(database))[0] is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _session(str(database)) == (43, "api")
        # The pass says what it did once it has stored it: the line follows the commit.
        while "reconciliation: sessions closed 1" not in server.log():
            assert time.monotonic() < deadline + 10, server.log()[-2000:]
            time.sleep(0.2)
        log = server.log()
    assert api.bad_signatures == 0
    assert "reconciliation: sessions closed 1" in log
    assert SECRET not in log
    with sqlite3.connect(database) as conn:
        kept = conn.execute("SELECT outcome, closed FROM reconcile_passes").fetchall()
    assert ("completed", 1) in kept
    assert all(outcome == "completed" for outcome, _ in kept)
