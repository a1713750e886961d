"""Settings from the environment, and start-up refused with one clear sentence."""

from __future__ import annotations

import pytest

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


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/db", "not a url", "oracle+cx_oracle://u:p@h/db"]
)
def test_unsupported_database_url_stops_start_up_with_one_sentence(url):
    with pytest.raises(ConfigError) as caught:
        load_settings(PAIR | {"PNM_DATABASE_URL": url})
    assert "PNM_DATABASE_URL" in str(caught.value)
    assert "sqlite:///" in str(caught.value) and "postgresql://" in str(caught.value)
