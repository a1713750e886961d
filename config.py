"""Settings: the environment (``PNM_*``) read once into one typed object."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import click

DEFAULT_WEBHOOK_PATH = "/webhook-listener"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_CLOCK_LEEWAY = 60
DEFAULT_DB_TIMEOUT = 5.0
DEFAULT_DATABASE_FILE = "instance/plugnmeet-webhooks.db"
LOG_FORMATS = ("text", "json")

_WHERE_KEYS_COME_FROM = (
    "copy the values of client.api_key and client.secret from the plugNmeet server's config.yaml"
)


class ConfigError(click.ClickException, ValueError):
    """A setting is missing or wrong; the message names it and says how to fix it.

    Being a ``ClickException``, it ends a ``flask`` command with that one sentence.
    """


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know, validated."""

    api_keys: Mapping[str, str]
    database_url: str
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    clock_leeway: int = DEFAULT_CLOCK_LEEWAY
    log_format: str = "text"
    log_level: str = "INFO"
    proxy_count: int = 0
    db_timeout: float = DEFAULT_DB_TIMEOUT
    admin_token: str | None = None


DATABASES = ("sqlite", "postgresql")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def check_database_url(url: str) -> str:
    """Return ``url`` if it names a SQLite or PostgreSQL database, or say what to write."""
    match = _URL_SCHEME.match(url)
    if match is None:
        raise ConfigError(
            "PNM_DATABASE_URL is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host/dbname."
        )
    backend = match.group(1).partition("+")[0].lower()
    if backend not in DATABASES:
        raise ConfigError(
            f"PNM_DATABASE_URL names a {backend} database; use sqlite:///path/to/file.db "
            "or postgresql://user@host/dbname."
        )
    return url


def default_database_url(root: Path | None = None) -> str:
    """Return the SQLite URL of the default database file under ``instance/``."""
    base = root if root is not None else Path(__file__).resolve().parent
    return f"sqlite:///{base / DEFAULT_DATABASE_FILE}"


def parse_api_keys(env: Mapping[str, str]) -> dict[str, str]:
    """Read the key pairs: ``PNM_API_KEY`` + ``PNM_API_SECRET`` first, then ``PNM_API_KEYS``."""
    pairs: dict[str, str] = {}

    def add(key: str, secret: str, where: str) -> None:
        if key in pairs and pairs[key] != secret:
            raise ConfigError(f"{where} names key {key!r} again with another secret; keep one.")
        pairs[key] = secret

    key = env.get("PNM_API_KEY", "").strip()
    secret = env.get("PNM_API_SECRET", "").strip()
    listed = env.get("PNM_API_KEYS", "").strip()
    if key or secret or not listed:
        if not key:
            raise ConfigError(f"PNM_API_KEY is not set; {_WHERE_KEYS_COME_FROM}.")
        if not secret:
            raise ConfigError(f"PNM_API_SECRET is not set or empty; {_WHERE_KEYS_COME_FROM}.")
        add(key, secret, "PNM_API_KEY")
    for number, item in enumerate(listed.split(",") if listed else [], start=1):
        key, sep, secret = (part.strip() for part in item.partition(":"))
        if not sep or not key:
            raise ConfigError(
                f"PNM_API_KEYS entry {number} is not 'key:secret'; write the pairs as "
                f"key1:secret1,key2:secret2 ({_WHERE_KEYS_COME_FROM})."
            )
        if not secret:
            raise ConfigError(
                f"PNM_API_KEYS entry {number} (key {key!r}) has an empty secret; "
                f"{_WHERE_KEYS_COME_FROM}."
            )
        add(key, secret, "PNM_API_KEYS")
    return pairs


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}.")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}.") from None
    if not 0 < value <= 600:
        raise ConfigError(f"{name} must be more than 0 and at most 600 seconds, not {raw}.")
    return value


def _admin_token(env: Mapping[str, str]) -> str | None:
    token = env.get("PNM_ADMIN_TOKEN", "").strip()
    if not token:
        return None
    if len(token) < 16:
        raise ConfigError(
            "PNM_ADMIN_TOKEN is shorter than 16 characters; use a long random value, "
            "e.g. the output of: openssl rand -hex 32."
        )
    return token


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment) or say what is wrong."""
    env = os.environ if env is None else env
    path = env.get("PNM_WEBHOOK_PATH", "").strip() or DEFAULT_WEBHOOK_PATH
    if not path.startswith("/") or any(c in path for c in "?#<> \t"):
        raise ConfigError(
            f"PNM_WEBHOOK_PATH must be a URL path such as /webhook-listener, not {path!r}."
        )
    log_format = env.get("PNM_LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"PNM_LOG_FORMAT must be 'text' or 'json', not {log_format!r}.")
    log_level = env.get("PNM_LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            f"PNM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {log_level!r}."
        )
    return Settings(
        api_keys=parse_api_keys(env),
        database_url=check_database_url(
            env.get("PNM_DATABASE_URL", "").strip() or default_database_url()
        ),
        webhook_path=path,
        max_body_bytes=_int(env, "PNM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024),
        clock_leeway=_int(env, "PNM_CLOCK_LEEWAY", DEFAULT_CLOCK_LEEWAY, minimum=0),
        log_format=log_format,
        log_level=log_level,
        proxy_count=_int(env, "PNM_PROXY_COUNT", 0, minimum=0),
        db_timeout=_seconds(env, "PNM_DB_TIMEOUT", DEFAULT_DB_TIMEOUT),
        admin_token=_admin_token(env),
    )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where and how gunicorn serves the receiver."""

    host: str
    port: int
    workers: int
    threads: int


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Read ``HOST``, ``PORT``, ``WEB_CONCURRENCY`` and ``PNM_WORKER_THREADS`` for gunicorn."""
    env = os.environ if env is None else env
    port = _int(env, "PORT", 8000, minimum=0)
    if port > 65535:
        raise ConfigError(f"PORT must be a port number from 0 to 65535, not {port}.")
    return ServerSettings(
        # plugNmeet runs on another host, so listen on every interface unless HOST says not.
        host=env.get("HOST", "").strip() or "0.0.0.0",  # noqa: S104
        port=port,
        workers=_int(env, "WEB_CONCURRENCY", 2, minimum=1),
        threads=_int(env, "PNM_WORKER_THREADS", 16, minimum=1),
    )


def main() -> int:
    """Check the environment as ``make run`` will use it; print one sentence if it is wrong."""
    try:
        load_server_settings()
        load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
