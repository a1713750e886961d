"""Settings from the environment, and start-up refused with one clear sentence."""

from __future__ import annotations

import pytest

from config import DEFAULT_WEBHOOK_PATH, ConfigError, load_settings
from tests.support.helpers import ROOT, corpus

SECRET = "secret-from-config-yaml-0123456789"
S1 = "s1-0123456789abcdefghijklmnopqrstuv"
S2 = "s2-0123456789abcdefghijklmnopqrstuv"
PAIR = {"PNM_API_KEY": "plugnmeet", "PNM_API_SECRET": SECRET}


def test_defaults():
    settings = load_settings(PAIR)
    assert dict(settings.api_keys) == {"plugnmeet": SECRET}
    assert settings.webhook_path == DEFAULT_WEBHOOK_PATH == "/webhook-listener"
    assert settings.max_body_bytes == 64 * 1024
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
    settings = load_settings(PAIR | {"PNM_API_KEYS": f"old:{S1}, new : {S2} "})
    assert dict(settings.api_keys) == {"plugnmeet": SECRET, "old": S1, "new": S2}
    assert settings.tenant_of("old") == "old"  # each key is its own tenant unless named
    only_list = load_settings({"PNM_API_KEYS": f"a:{S1},b:{S2}"})
    assert list(only_list.api_keys) == ["a", "b"]


def test_numeric_secret_stays_a_string():
    digits = "0123456789012345678901234567890123"
    assert load_settings({"PNM_API_KEY": "k", "PNM_API_SECRET": digits}).api_keys["k"] == digits
    assert load_settings({"PNM_API_KEYS": f"k:0{digits}"}).api_keys["k"] == f"0{digits}"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["PNM_API_KEY", "client.api_key", "client.secret"]),
        ({"PNM_API_KEY": "k"}, ["PNM_API_SECRET", "client.secret"]),
        ({"PNM_API_KEY": "k", "PNM_API_SECRET": "   "}, ["PNM_API_SECRET"]),
        ({"PNM_API_SECRET": "s"}, ["PNM_API_KEY"]),
        ({"PNM_API_KEYS": f"k1:{S1},k2:"}, ["PNM_API_KEYS entry 2", "'k2'", "empty secret"]),
        ({"PNM_API_KEYS": "k1"}, ["PNM_API_KEYS entry 1", "key:secret"]),
        ({"PNM_API_KEYS": f"a:{S1},a:{S2}"}, ["PNM_API_KEYS", "'a'"]),
        ({"PNM_API_KEY": "k", "PNM_API_SECRET": "x"}, ["PNM_API_SECRET", "16 characters"]),
        ({"PNM_API_KEY": "my key", "PNM_API_SECRET": S1}, ["PNM_API_KEY has the key"]),
        ({"PNM_API_KEYS": "k:short-secret"}, ["PNM_API_KEYS entry 1", "16 characters"]),
        ({"PNM_API_KEYS": f"bad key:{S1}"}, ["PNM_API_KEYS entry 1", "not an API key"]),
        (PAIR | {"PNM_CLOCK_LEEWAY": "99999999"}, ["PNM_CLOCK_LEEWAY", "at most 300"]),
        (PAIR | {"PNM_METRICS_TOKEN": "short"}, ["PNM_METRICS_TOKEN", "16 characters"]),
        (PAIR | {"PNM_RETENTION_DAYS": "a year"}, ["PNM_RETENTION_DAYS", "whole number"]),
        (PAIR | {"PNM_MAX_BODY_BYTES": "1MB"}, ["PNM_MAX_BODY_BYTES", "whole number"]),
        (PAIR | {"PNM_MAX_BODY_BYTES": "10"}, ["PNM_MAX_BODY_BYTES", "at least 1024"]),
        (PAIR | {"PNM_CLOCK_LEEWAY": "-1"}, ["PNM_CLOCK_LEEWAY"]),
        (PAIR | {"PNM_WEBHOOK_PATH": "webhook"}, ["PNM_WEBHOOK_PATH"]),
        (PAIR | {"PNM_LOG_FORMAT": "xml"}, ["PNM_LOG_FORMAT"]),
        (PAIR | {"PNM_DB_TIMEOUT": "0"}, ["PNM_DB_TIMEOUT"]),
        (PAIR | {"PNM_DB_TIMEOUT": "0.0009"}, ["PNM_DB_TIMEOUT", "from 0.1 to 600"]),
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
    "url",
    [
        "mysql://root@localhost/db",
        "not a url",
        "oracle+cx_oracle://u:p@h/db",
        "postgresql://u:p@host:abc/db",
        "SQLite:///x.db",
    ],
)
def test_unsupported_database_url_stops_start_up_with_one_sentence(url):
    with pytest.raises(ConfigError) as caught:
        load_settings(PAIR | {"PNM_DATABASE_URL": url})
    assert "PNM_DATABASE_URL" in str(caught.value)
    assert "sqlite:///" in str(caught.value) and "postgresql://" in str(caught.value)


def test_a_secret_under_32_characters_is_allowed_with_a_warning():
    settings = load_settings({"PNM_API_KEY": "k", "PNM_API_SECRET": "sixteen-chars-ok"})
    assert settings.api_keys["k"] == "sixteen-chars-ok"
    [warning] = settings.warnings
    assert "PNM_API_SECRET" in warning and "shorter than 32 characters" in warning
    assert "sixteen-chars-ok" not in warning
    assert load_settings(PAIR).warnings == ()


def _keys_file(tmp_path, text: str) -> dict[str, str]:
    path = tmp_path / "keys"
    path.write_text(text)
    return {"PNM_API_KEYS_FILE": str(path)}


def test_the_keys_file_cannot_mis_split_a_secret_and_names_tenants(tmp_path):
    env = _keys_file(
        tmp_path,
        f"# plugNmeet servers\nk: abc,def:ghi-{S1}\n\n[acme]\nacme-2025: {S1}\nacme-2026: {S2}\n",
    )
    settings = load_settings(env)
    assert dict(settings.api_keys) == {
        "k": f"abc,def:ghi-{S1}",
        "acme-2025": S1,
        "acme-2026": S2,
    }
    assert [settings.tenant_of(k) for k in ("k", "acme-2025", "acme-2026")] == ["k", "acme", "acme"]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("just-a-key\n", ["PNM_API_KEYS_FILE line 1", "key: secret"]),
        (f"[bad tenant!]\nk: {S1}\n", ["PNM_API_KEYS_FILE line 1", "tenant"]),
        ("# nothing but a comment\n", ["PNM_API_KEYS_FILE holds no 'key: secret' line"]),
        (f"k: {S1}\nk: {S2}\n", ["PNM_API_KEYS_FILE line 2", "'k'", "another secret"]),
        ("k: tooshort\n", ["PNM_API_KEYS_FILE line 1", "16 characters"]),
        (f"[a]\nk: {S1}\n[b]\nk: {S1}\n", ["line 4", "tenant 'b'", "in 'a' already"]),
        (f"globex: {S1}\n[globex]\ng2: {S2}\n", ["'globex' is both a key", "[globex]"]),
    ],
)
def test_mistakes_in_the_keys_file_name_the_line(tmp_path, text, names):
    with pytest.raises(ConfigError) as caught:
        load_settings(_keys_file(tmp_path, text))
    message = str(caught.value)
    assert message.endswith(".")
    for name in names:
        assert name in message
    assert S1 not in message and S2 not in message


def test_an_unreadable_keys_file_says_so(tmp_path):
    with pytest.raises(ConfigError, match=r"PNM_API_KEYS_FILE names .* cannot be read"):
        load_settings({"PNM_API_KEYS_FILE": str(tmp_path / "missing")})


def test_a_proxy_count_with_a_public_host_is_warned_about():
    from config import load_server_settings

    [warning] = load_server_settings({"PNM_PROXY_COUNT": "1"}).warnings
    assert "PNM_PROXY_COUNT" in warning and "HOST" in warning
    assert load_server_settings({"PNM_PROXY_COUNT": "1", "HOST": "127.0.0.1"}).warnings == ()
    assert load_server_settings({}).warnings == ()


def test_the_default_database_lives_beside_a_checkout():
    # Installed with pip, it is under the working directory instead: see test_install.py.
    import config

    checkout = config.default_database_url()
    assert checkout == f"sqlite:///{ROOT / 'instance' / 'plugnmeet-webhooks.db'}"


def test_a_secret_copied_with_its_quotes_from_config_yaml_loses_them(tmp_path):
    settings = load_settings(_keys_file(tmp_path, f'k: "{S1}"\n'))
    assert settings.api_keys["k"] == S1


def test_an_outbox_lease_shorter_than_its_renewals_allow_is_refused():
    env = {"PNM_API_KEY": "k", "PNM_API_SECRET": "s" * 32}
    with pytest.raises(ConfigError, match="PNM_OUTBOX_LEASE must be at least 5 seconds"):
        load_settings({**env, "PNM_OUTBOX_LEASE": "2"})
    assert load_settings({**env, "PNM_OUTBOX_LEASE": "5"}).outbox_lease == 5.0


# --- plugNmeet's API, for reconciliation -----------------------------------------------------


def test_reconciliation_is_off_until_a_plugnmeet_url_is_given():
    settings = load_settings(PAIR)
    assert settings.plugnmeet_servers == ()
    assert (settings.reconcile_interval, settings.reconcile_grace) == (300.0, 120.0)


def test_the_plugnmeet_url_is_signed_with_the_webhooks_pair():
    settings = load_settings(
        PAIR
        | {
            "PNM_PLUGNMEET_URL": "https://meet.example.com/",
            "PNM_RECONCILE_INTERVAL": "5m",
            "PNM_RECONCILE_GRACE": "90",
        }
    )
    [server] = settings.plugnmeet_servers
    assert (server.tenant, server.url, server.api_key, server.secret) == (
        "plugnmeet",
        "https://meet.example.com",
        "plugnmeet",
        SECRET,
    )
    assert (settings.reconcile_interval, settings.reconcile_grace) == (300.0, 90.0)
    assert SECRET not in repr(settings)
    assert load_settings(PAIR | {"PNM_RECONCILE_INTERVAL": "off"}).reconcile_interval is None


def test_plain_http_to_another_host_is_warned_about():
    remote = load_settings(PAIR | {"PNM_PLUGNMEET_URL": "http://meet.example.com"})
    assert any("plain http" in w for w in remote.warnings)
    local = load_settings(PAIR | {"PNM_PLUGNMEET_URL": "http://127.0.0.1:8080"})
    assert not any("plain http" in w for w in local.warnings)


def test_each_tenant_names_its_server_in_the_keys_file(tmp_path):
    env = _keys_file(
        tmp_path,
        f"[acme]\nplugnmeet_url = https://meet.acme.example\nacme-2025: {S2}\nacme-2026: {S1}\n"
        f"\n[globex]\nglobex: {S2}\nplugnmeet_url = 'https://globex.example/meet/'\n"
        f"\n[initech]\ninitech: {S1}\n",
    )
    servers = {s.tenant: s for s in load_settings(env).plugnmeet_servers}
    assert sorted(servers) == ["acme", "globex"]  # initech names no server
    # Signed with the section's last key: the newest, as keys are rotated.
    assert (servers["acme"].url, servers["acme"].api_key) == (
        "https://meet.acme.example",
        "acme-2026",
    )
    assert (servers["globex"].url, servers["globex"].secret) == ("https://globex.example/meet", S2)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (PAIR | {"PNM_PLUGNMEET_URL": "meet.example.com"}, ["PNM_PLUGNMEET_URL", "https://"]),
        (PAIR | {"PNM_PLUGNMEET_URL": "ftp://meet.example.com"}, ["PNM_PLUGNMEET_URL"]),
        (PAIR | {"PNM_PLUGNMEET_URL": "https://u:p@meet.example.com"}, ["PNM_PLUGNMEET_URL"]),
        (PAIR | {"PNM_PLUGNMEET_URL": "https://meet.example.com/?a=1"}, ["PNM_PLUGNMEET_URL"]),
        (PAIR | {"PNM_PLUGNMEET_URL": "https://meet.example.com:port"}, ["PNM_PLUGNMEET_URL"]),
        (PAIR | {"PNM_PLUGNMEET_CA": "/no/such/ca.pem"}, ["PNM_PLUGNMEET_CA", "PEM file"]),
        (PAIR | {"PNM_RECONCILE_INTERVAL": "1s"}, ["PNM_RECONCILE_INTERVAL", "10 s"]),
        (PAIR | {"PNM_RECONCILE_INTERVAL": "often"}, ["PNM_RECONCILE_INTERVAL"]),
        (PAIR | {"PNM_RECONCILE_GRACE": "2d"}, ["PNM_RECONCILE_GRACE", "24 h"]),
        (
            {"PNM_API_KEYS": f"a:{S1},b:{S2}", "PNM_PLUGNMEET_URL": "https://m.example"},
            ["PNM_PLUGNMEET_URL", "several tenants", "plugnmeet_url"],
        ),
    ],
)
def test_wrong_plugnmeet_settings_are_named_in_one_sentence(env, names):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.endswith(".")
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        (f"plugnmeet_url = https://m.example\nk: {S1}\n", ["line 1", "outside any [tenant]"]),
        (f"[a]\nplugnmeet_url = m.example\nk: {S1}\n", ["line 2", "base URL"]),
        (
            f"[a]\nplugnmeet_url = https://m.example\nplugnmeet_url = https://n.example\nk: {S1}\n",
            ["line 3", "second plugnmeet_url"],
        ),
        (f"[a]\nplugnmeet_url = https://m.example\n[b]\nk: {S1}\n", ["[a]", "no key"]),
    ],
)
def test_mistakes_in_plugnmeet_urls_name_the_line(tmp_path, text, names):
    with pytest.raises(ConfigError) as caught:
        load_settings(_keys_file(tmp_path, text))
    for name in names:
        assert name in str(caught.value)
    assert S1 not in str(caught.value)


# --- plugNmeet's own config.yaml ---------------------------------------------------------------

PLUGNMEET_YAML = """\
## as plugNmeet's installer writes it (abridged)
client:
  port: 8080
  debug: false
  path: "/app/client/dist"
  api_key: "plugnmeet"
  secret: "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"
  webhook_conf:
    enable: true
    url: ""
    enable_for_per_meeting: false
"""


def _plugnmeet_yaml(tmp_path, text: str = PLUGNMEET_YAML) -> dict[str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return {"PNM_PLUGNMEET_CONFIG": str(path)}


def test_the_key_pair_is_read_from_plugnmeets_config_yaml(tmp_path):
    env = _plugnmeet_yaml(tmp_path) | {"PNM_PLUGNMEET_URL": "http://127.0.0.1:8080"}
    settings = load_settings(env)
    assert dict(settings.api_keys) == {"plugnmeet": "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"}
    [server] = settings.plugnmeet_servers  # the API is signed with the same pair
    assert (server.api_key, server.secret) == ("plugnmeet", "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6")


def test_a_numeric_secret_in_config_yaml_stays_the_digits_written(tmp_path):
    text = PLUGNMEET_YAML.replace('"zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"', "12345678901234567890")
    assert dict(load_settings(_plugnmeet_yaml(tmp_path, text)).api_keys) == {
        "plugnmeet": "12345678901234567890"
    }


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("client: [unclosed\n", ["is not YAML", "config.yaml"]),
        ("server:\n  port: 1\n", ["has no client.api_key", "/opt/plugNmeet/config.yaml"]),
        ('client:\n  api_key: "k"\n', ["has no client.secret"]),
        ('client:\n  api_key: "k"\n  secret: "short"\n', ["16 characters"]),
        (None, ["cannot be read"]),
    ],
)
def test_a_config_yaml_that_cannot_give_the_pair_says_so(tmp_path, text, names):
    env = {"PNM_PLUGNMEET_CONFIG": str(tmp_path / "missing.yaml")}
    if text is not None:
        env = _plugnmeet_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert message.endswith(".") and "PNM_PLUGNMEET_CONFIG" in message
    for name in names:
        assert name in message


def test_config_yaml_and_a_key_in_the_environment_are_not_both_taken(tmp_path):
    with pytest.raises(ConfigError, match="keep one"):
        load_settings(_plugnmeet_yaml(tmp_path) | PAIR)


FULL_PLUGNMEET_YAML = """\
## as plugNmeet's installer writes it: other blocks have key pairs of their own
room_default_settings:
  max_duration: 0
client:
  port: 8080
  api_key: "plugnmeet"
  secret: "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"
  webhook_conf:
    enable: true
    url: ""
livekit_info:
  host: "http://livekit:7880"
  api_key: "lk-key"
  secret: "lk-secret-0123456789abcdefghijkl"
  token_validity: 1h
nats_info:
  nats_urls: ["nats://nats:4222"]
  account: "PNM"
  user: "auth"
  password: "nats-password"
"""


def test_only_the_client_block_gives_the_pair(tmp_path):
    assert dict(load_settings(_plugnmeet_yaml(tmp_path, FULL_PLUGNMEET_YAML)).api_keys) == {
        "plugnmeet": "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"
    }
    # Without client.api_key the file is refused, although livekit_info has an api_key.
    text = FULL_PLUGNMEET_YAML.replace('  api_key: "plugnmeet"\n', "")
    env = _plugnmeet_yaml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value) == (
        f"PNM_PLUGNMEET_CONFIG names {env['PNM_PLUGNMEET_CONFIG']}, which has no "
        "client.api_key; give the path of plugNmeet's config.yaml "
        "(usually /opt/plugNmeet/config.yaml)."
    )


def test_a_delivery_signed_with_the_pair_of_config_yaml_is_accepted(tmp_path):
    from dataclasses import replace

    from app import create_app
    from plugnmeet_webhooks import runtime
    from validation import sign

    settings = load_settings(_plugnmeet_yaml(tmp_path, FULL_PLUGNMEET_YAML))
    app = create_app(replace(settings, database_url=f"sqlite:///{tmp_path / 'yaml.db'}"))
    try:
        client = app.test_client()
        body = corpus("room_created")

        def deliver(key: str, secret: str) -> int:
            token = sign(body, key, secret)
            headers = {"Authorization": token, "Content-Type": "application/json"}
            return client.post("/webhook-listener", data=body, headers=headers).status_code

        assert deliver("lk-key", "lk-secret-0123456789abcdefghijkl") == 403  # LiveKit's pair
        assert deliver("plugnmeet", "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6") == 200
    finally:
        runtime.of(app).close()
