"""Start-up refused with one clear sentence: gunicorn, ``make run``'s check, the flask CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT, run_flask


def _gunicorn_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNM_")}
    return env | extra


def test_gunicorn_refuses_to_start_without_a_secret(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=_gunicorn_env(PNM_API_KEY="plugnmeet", PORT="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "error: PNM_API_SECRET is not set or empty" in result.stderr
    assert "client.secret" in result.stderr
    assert "Traceback" not in result.stderr


def test_flask_cli_says_what_is_missing():
    result = run_flask("events", env=_gunicorn_env())
    assert result.returncode != 0
    assert "PNM_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"PORT": "99999"}, "error: PORT must be a port number from 0 to 65535, not 99999."),
        ({"PNM_DATABASE_URL": "mysql://x@y/z"}, "error: PNM_DATABASE_URL names a mysql database"),
    ],
)
def test_gunicorn_refuses_bad_server_settings_with_one_sentence(env, sentence):
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=_gunicorn_env(
            PNM_API_KEY="k", PNM_API_SECRET="s-0123456789abcdefghijklmnopqrstuvwxyz", **env
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"WEB_CONCURRENCY": "two"}, "error: WEB_CONCURRENCY must be a whole number, not 'two'.\n"),
        ({"WEB_CONCURRENCY": "0"}, "error: WEB_CONCURRENCY must be at least 1, not 0.\n"),
        ({"PNM_API_SECRET": ""}, "error: PNM_API_SECRET is not set or empty;"),
    ],
)
def test_make_run_checks_the_environment_first(env, sentence):
    result = subprocess.run(
        [sys.executable, "-m", "config"],
        cwd=ROOT,
        env=_gunicorn_env(
            **(
                {"PNM_API_KEY": "k", "PNM_API_SECRET": "s-0123456789abcdefghijklmnopqrstuvwxyz"}
                | env
            )
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(sentence)
    assert "Traceback" not in result.stderr


def test_environment_check_passes_quietly():
    result = subprocess.run(
        [sys.executable, "-m", "config"],
        cwd=ROOT,
        env=_gunicorn_env(PNM_API_KEY="k", PNM_API_SECRET="s-0123456789abcdefghijklmnopqrstuvwxyz"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_sign_opens_no_database(tmp_path):
    missing = tmp_path / "no" / "such" / "folder" / "events.db"
    sample = ROOT / "samples" / "session_ended.json"
    result = run_flask("sign", str(sample), database=missing)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("curl -sS -X POST http://127.0.0.1:8000/webhook-listener ")
    assert not (tmp_path / "no").exists(), "sign must not create the database or its folder"
