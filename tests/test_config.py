"""Settings from the environment, and start-up refused with one clear sentence."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, run_flask

from config import DEFAULT_WEBHOOK_PATH, ConfigError, load_settings

PAIR = {"PNM_API_KEY": "plugnmeet", "PNM_API_SECRET": "secret-from-config-yaml"}


def test_defaults():
    settings = load_settings(PAIR)
    assert dict(settings.api_keys) == {"plugnmeet": "secret-from-config-yaml"}
    assert settings.webhook_path == DEFAULT_WEBHOOK_PATH == "/webhook-listener"
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.clock_leeway == 60
    assert settings.log_format == "text"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("/instance/plugnmeet-webhooks.db")


def test_everything_can_be_set():
    settings = load_settings(
        PAIR
        | {
            "PNM_DATABASE_URL": "sqlite:////tmp/x.db",
            "PNM_WEBHOOK_PATH": "/hooks/pnm",
            "PNM_MAX_BODY_BYTES": "2048",
            "PNM_CLOCK_LEEWAY": "5",
            "PNM_LOG_FORMAT": "JSON",
            "PNM_LOG_LEVEL": "warning",
            "PNM_PROXY_COUNT": "1",
            "PNM_DB_TIMEOUT": "2.5",
        }
    )
    assert (settings.database_url, settings.webhook_path) == ("sqlite:////tmp/x.db", "/hooks/pnm")
    assert (settings.max_body_bytes, settings.clock_leeway) == (2048, 5)
    assert (settings.log_format, settings.log_level) == ("json", "WARNING")
    assert (settings.proxy_count, settings.db_timeout) == (1, 2.5)


def test_several_key_pairs_for_rotation():
    settings = load_settings(PAIR | {"PNM_API_KEYS": "old:s1, new : s2 ,"[:-1]})
    assert dict(settings.api_keys) == {
        "plugnmeet": "secret-from-config-yaml",
        "old": "s1",
        "new": "s2",
    }
    only_list = load_settings({"PNM_API_KEYS": "a:1,b:2"})
    assert list(only_list.api_keys) == ["a", "b"]


def test_numeric_secret_stays_a_string():
    assert load_settings({"PNM_API_KEY": "k", "PNM_API_SECRET": "0123"}).api_keys["k"] == "0123"
    assert load_settings({"PNM_API_KEYS": "k:007"}).api_keys["k"] == "007"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["PNM_API_KEY", "client.api_key", "client.secret"]),
        ({"PNM_API_KEY": "k"}, ["PNM_API_SECRET", "client.secret"]),
        ({"PNM_API_KEY": "k", "PNM_API_SECRET": "   "}, ["PNM_API_SECRET"]),
        ({"PNM_API_SECRET": "s"}, ["PNM_API_KEY"]),
        ({"PNM_API_KEYS": "k1:s1,k2:"}, ["PNM_API_KEYS entry 2", "'k2'", "empty secret"]),
        ({"PNM_API_KEYS": "k1"}, ["PNM_API_KEYS entry 1", "key:secret"]),
        ({"PNM_API_KEYS": "a:1,a:2"}, ["PNM_API_KEYS", "'a'"]),
        (PAIR | {"PNM_MAX_BODY_BYTES": "1MB"}, ["PNM_MAX_BODY_BYTES", "whole number"]),
        (PAIR | {"PNM_MAX_BODY_BYTES": "10"}, ["PNM_MAX_BODY_BYTES", "at least 1024"]),
        (PAIR | {"PNM_CLOCK_LEEWAY": "-1"}, ["PNM_CLOCK_LEEWAY"]),
        (PAIR | {"PNM_WEBHOOK_PATH": "webhook"}, ["PNM_WEBHOOK_PATH"]),
        (PAIR | {"PNM_LOG_FORMAT": "xml"}, ["PNM_LOG_FORMAT"]),
        (PAIR | {"PNM_DB_TIMEOUT": "0"}, ["PNM_DB_TIMEOUT"]),
    ],
)
def test_wrong_settings_are_named_in_one_sentence(env, names):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.count(". ") == 0 and message.endswith(".")
    for name in names:
        assert name in message


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
        env=_gunicorn_env(PNM_API_KEY="k", PNM_API_SECRET="s", **env),
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
        env=_gunicorn_env(**({"PNM_API_KEY": "k", "PNM_API_SECRET": "s"} | env)),
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
        env=_gunicorn_env(PNM_API_KEY="k", PNM_API_SECRET="s"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
