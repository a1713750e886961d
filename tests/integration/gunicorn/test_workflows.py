"""Workflows under a real gunicorn: the example rules, a worker killed mid-send, two hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from standardwebhooks.webhooks import Webhook

from plugnmeet_webhooks.cli.deliveries import post
from tests.integration.database.test_workflows import EXPECTED_SLACK, SECRET, example_rules
from tests.support.gunicorn_server import gunicorn, wait_for_workers
from tests.support.helpers import CORPUS, KEY, ROOT, corpus_json
from tests.support.helpers import SECRET as API_SECRET
from tests.support.sink import Answer, Sink
from validation import sign

pytestmark = pytest.mark.slow


def _send(url: str, bodies: list[bytes], threads: int = 8) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(
            pool.map(lambda b: post(url, b, sign(b, KEY, API_SECRET), timeout=30)[0], bodies)
        )


def _vips(count: int, prefix: str = "vip") -> list[bytes]:
    template = corpus_json("participant_joined", 3)  # Carol, a VIP, joins
    bodies = []
    for n in range(count):
        template["id"] = f"{prefix}-{n:04d}"
        template["participant"]["sid"] = f"PA_{prefix}{n}"
        bodies.append(json.dumps(template).encode())
    return bodies


def _env(rules: str, **extra: str) -> dict[str, str]:
    return {
        "PNM_RULES_FILE": rules,
        "OPS_SLACK_URL": os.environ["OPS_SLACK_URL"],
        "BILLING_WEBHOOK_SECRET": SECRET,
        "PNM_API_KEYS": "",  # one plugNmeet server, as in the README's example
        **extra,
    }


def test_the_corpus_through_gunicorn_sends_exactly_the_expected_messages(
    tmp_path, monkeypatch, database_url
):
    with Sink() as sink:
        rules = example_rules(tmp_path, sink.url(""), monkeypatch)
        with gunicorn(tmp_path, workers=2, PNM_DATABASE_URL=database_url, **_env(rules)) as server:
            for body in CORPUS:  # in order, as one plugNmeet room worker sends them
                assert (
                    post(server.url, body.read_bytes(), sign(body.read_bytes(), KEY, API_SECRET))[0]
                    == 200
                )
            slack = sink.wait_for("/slack", 3)
            [billing] = sink.wait_for("/billing", 1)
            time.sleep(1.0)  # anything more would arrive now
    assert sorted(r.json()["text"] for r in slack) == sorted(EXPECTED_SLACK)
    assert len(sink.at("/slack")) == 3 and len(sink.at("/billing")) == 1
    payload = Webhook(SECRET).verify(billing.body, billing.headers)
    assert payload["data"]["text"] == "weekly-standup ended: 43 billable minutes"


def test_a_worker_killed_while_it_sends_leaves_nothing_unsent(tmp_path, monkeypatch):
    with Sink() as sink:
        sink.script("/slack", then=Answer(200, delay=0.02))
        rules = example_rules(tmp_path, sink.url(""), monkeypatch)
        env = _env(rules, PNM_OUTBOX_LEASE="5")
        with gunicorn(tmp_path, workers=1, **env) as server:
            [worker] = wait_for_workers(server.process.pid, 1)
            assert _send(server.url, _vips(200)) == [200] * 200
            sink.wait_for("/slack", 40)
            os.kill(worker, signal.SIGKILL)  # mid-send: some messages are under its lease
            wait_for_workers(server.process.pid, 1)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                keys = Counter(r.headers["idempotency-key"] for r in sink.at("/slack"))
                if len(keys) == 200:
                    break
                time.sleep(0.1)
    arrived = sink.at("/slack")
    keys = Counter(r.headers["idempotency-key"] for r in arrived)
    assert len(keys) == 200, f"{200 - len(keys)} messages never arrived"
    # A message sent again is the same message: same key, same bytes.
    by_key: dict[str, set[bytes]] = {}
    for request in arrived:
        by_key.setdefault(request.headers["idempotency-key"], set()).add(request.body)
    assert all(len(bodies) == 1 for bodies in by_key.values())


def test_two_receivers_on_one_postgresql_send_no_message_twice(
    tmp_path, monkeypatch, postgres_server
):
    from tests.support import postgres

    if postgres_server is None:
        pytest.skip(postgres.skip_reason())
    with postgres.fresh_schema(postgres_server) as url, Sink() as sink:
        rules = example_rules(tmp_path, sink.url(""), monkeypatch)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        env = _env(rules, PNM_DATABASE_URL=url)
        with (
            gunicorn(tmp_path / "a", workers=2, **env) as first,
            gunicorn(tmp_path / "b", workers=2, **env) as second,
        ):
            bodies = _vips(500)
            with ThreadPoolExecutor(2) as pool:
                halves = pool.map(
                    lambda pair: _send(pair[0], pair[1], threads=4),
                    [(first.url, bodies[::2]), (second.url, bodies[1::2])],
                )
            assert [s for half in halves for s in half] == [200] * 500
            sink.wait_for("/slack", 500, timeout=120)
            time.sleep(2.0)  # a message sent twice would arrive now
    keys = Counter(r.headers["idempotency-key"] for r in sink.at("/slack"))
    assert len(keys) == 500
    assert max(keys.values()) == 1, "no message may arrive twice"


def test_gunicorn_refuses_a_rules_file_with_a_mistake(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rules]]\nname = "r"\non = "session_ended"\nsend = ["nowhere"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNM_")}
    env |= {
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": API_SECRET,
        "PNM_RULES_FILE": str(bad),
        "PNM_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"error: {bad}: rule 'r' sends to 'nowhere', which is not a destination" in result.stderr
    assert "Traceback" not in result.stderr
