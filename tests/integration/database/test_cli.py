"""The flask commands: sign, events, init-db (send is exercised against gunicorn)."""

from __future__ import annotations

import json
import shlex

from tests.support.helpers import CORPUS, KEY, OTHER_KEY, SAMPLES_DIR, SECRET, corpus_json, deliver
from validation import verify

SAMPLE = SAMPLES_DIR / "session_ended.json"


def _parse_curl(output: str) -> tuple[str, dict[str, str], str]:
    words = shlex.split(output)
    assert words[:4] == ["curl", "-sS", "-X", "POST"]
    url = words[4]
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    data = words[words.index("--data-binary") + 1]
    return url, headers, data


def test_sign_prints_a_curl_command_signed_like_a_server(runner, settings):
    result = runner.invoke(args=["sign", str(SAMPLE)])

    assert result.exit_code == 0, result.output
    url, headers, data = _parse_curl(result.output)
    assert url == "http://127.0.0.1:8000/webhook-listener"
    assert data == f"@{SAMPLE}"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == headers["Hash-Token"]
    claims = verify(SAMPLE.read_bytes(), headers["Authorization"], settings.api_keys)
    assert claims["iss"] == KEY
    assert claims["exp"] - claims["nbf"] == 300
    assert len(claims["sha256"]) == 44 and claims["sha256"].endswith("=")


def test_sign_with_options(runner, settings, monkeypatch):
    monkeypatch.setenv("PORT", "9123")
    result = runner.invoke(args=["sign", str(SAMPLE), "--key", OTHER_KEY, "--hex"])
    url, headers, _ = _parse_curl(result.output)
    assert url == "http://127.0.0.1:9123/webhook-listener"
    claims = verify(SAMPLE.read_bytes(), headers["Authorization"], settings.api_keys)
    assert claims["iss"] == OTHER_KEY and len(claims["sha256"]) == 64

    other = runner.invoke(args=["sign", str(SAMPLE), "--url", "https://hooks.example/x"])
    assert _parse_curl(other.output)[0] == "https://hooks.example/x"


def test_sign_refuses_unknown_key_and_missing_file(runner):
    result = runner.invoke(args=["sign", str(SAMPLE), "--key", "nobody"])
    assert result.exit_code == 2
    assert "'nobody' is not a configured API key" in result.output
    assert SECRET not in result.output

    missing = runner.invoke(args=["sign", "no/such/file.json"])
    assert missing.exit_code == 2
    assert "cannot read no/such/file.json" in missing.output


def test_events_lists_newest_first(app, client, runner):
    empty = runner.invoke(args=["events"])
    assert "No events stored yet" in empty.output
    for path in CORPUS[:3]:
        deliver(client, path.read_bytes())

    table = runner.invoke(args=["events", "--limit", "2"])

    lines = table.output.splitlines()
    assert lines[0].split() == [
        "#",
        "received",
        "(UTC)",
        "tenant",
        "event",
        "room",
        "event",
        "id",
        "handler",
    ]
    assert [line.split()[0] for line in lines[1:]] == ["3", "2"]
    assert "participant_joined" in lines[1] and "room_started" in lines[2]

    listed = json.loads(runner.invoke(args=["events", "--format", "json"]).output)
    assert [row["event"] for row in listed] == [
        "participant_joined",
        "room_started",
        "room_created",
    ]
    assert listed[0]["event_id"] == corpus_json("participant_joined")["id"]
    assert "body" not in listed[0]


def test_events_rejects_a_bad_limit(runner):
    result = runner.invoke(args=["events", "--limit", "0"])
    assert result.exit_code == 2
    assert "--limit" in result.output


def test_db_commands_report_and_upgrade(runner):
    # Nothing has opened the database yet: it is empty until a delivery or an upgrade.
    assert runner.invoke(args=["db", "current"]).output == (
        "database: empty  this version: 0010  (run 'flask --app app db upgrade')\n"
    )
    assert runner.invoke(args=["db", "upgrade"]).output == (
        "Database schema upgraded from empty to 0010.\n"
    )
    assert runner.invoke(args=["db", "current"]).output == (
        "database: 0010  this version: 0010  (up to date)\n"
    )
    assert (
        runner.invoke(args=["db", "upgrade"]).output
        == "Database schema already at revision 0010.\n"
    )
