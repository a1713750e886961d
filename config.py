"""Settings: the environment (``PNM_*``) read once into one typed object."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click

DEFAULT_WEBHOOK_PATH = "/webhook-listener"
# The largest real delivery is a room_created or room_started carrying the whole room
# metadata (its feature flags): a few KB. The corpus session's largest is 610 bytes. 64 KiB
# leaves ten times room, and keeps a worker's memory bounded under hostile bodies.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_CLOCK_LEEWAY = 60
MAX_CLOCK_LEEWAY = 300
# After each failed attempt to send a message, the wait before the next (over a day in all):
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; after the last, the message is dead.
DEFAULT_OUTBOX_RETRIES = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
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
class PlugNmeetServer:
    """A plugNmeet server whose REST API reconciliation asks, with the pair that signs for it.

    plugNmeet has one pair per server (``client.api_key``, ``client.secret``): the webhooks'
    and the API's. The facts it gives belong to ``tenant``.
    """

    tenant: str
    url: str
    api_key: str
    secret: str = field(repr=False)


DEFAULT_RECONCILE_INTERVAL = 300.0
DEFAULT_RECONCILE_GRACE = 120.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know, validated."""

    api_keys: Mapping[str, str] = field(repr=False)
    """Each API key's secret."""
    database_url: str
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    clock_leeway: int = DEFAULT_CLOCK_LEEWAY
    log_format: str = "text"
    log_level: str = "INFO"
    proxy_count: int = 0
    db_timeout: float = DEFAULT_DB_TIMEOUT
    admin_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    retention_days: int | None = None
    rules_file: str | None = None
    billing_file: str | None = None
    """The billing file: issuer, plans, customers (None: no invoices)."""
    invoice_template: str | None = None
    """An operator's own Jinja2 HTML template for invoice PDFs (None: the built-in one)."""
    outbox_retries: tuple[float, ...] = DEFAULT_OUTBOX_RETRIES
    """The waits after each failed attempt to send a message; after the last, it is dead."""
    outbox_lease: float = 60.0
    dispatcher: bool = True
    """Whether each gunicorn worker sends the outbox (off: run 'flask outbox run' instead)."""
    tenants: Mapping[str, str] = field(default_factory=dict)
    """The tenant of each API key that has one besides itself (key rotation, shared names)."""
    warnings: tuple[str, ...] = ()
    """What is allowed but unwise, for the log at start-up."""
    plugnmeet_servers: tuple[PlugNmeetServer, ...] = ()
    """The plugNmeet servers reconciliation asks (none: it is off)."""
    plugnmeet_ca: str | None = None
    """A CA bundle to verify the plugNmeet servers' certificates with (default: the system's)."""
    reconcile_interval: float | None = DEFAULT_RECONCILE_INTERVAL
    """Seconds between background reconciliation passes (None: no background pass)."""
    reconcile_grace: float = DEFAULT_RECONCILE_GRACE
    """How long after its end a session may still get its session_ended by webhook."""

    def tenant_of(self, api_key: str) -> str:
        """Return the tenant whose data a delivery signed with ``api_key`` is."""
        return self.tenants.get(api_key, api_key)

    @property
    def tenant_names(self) -> tuple[str, ...]:
        """Every tenant the keys deliver into, sorted."""
        return tuple(sorted({self.tenant_of(key) for key in self.api_keys}))

    @property
    def commit_wait(self) -> float:
        """How long a delivery waits for its batch to be stored: the writer may wait for a
        lock (db_timeout) before it fails and once more when it retries; that and more."""
        return 2 * self.db_timeout + 10


DATABASES = ("sqlite", "postgresql")


def check_database_url(url: str) -> str:
    """Return ``url`` if it names a SQLite or PostgreSQL database, or say what to write."""
    from sqlalchemy.engine import make_url

    try:
        backend = make_url(url).get_backend_name()
    except Exception:  # SQLAlchemy raises ArgumentError and ValueError alike
        raise ConfigError(
            "PNM_DATABASE_URL is not a database URL; use sqlite:///path/to/file.db "
            "or postgresql://user@host:5432/dbname."
        ) from None
    if backend not in DATABASES:
        raise ConfigError(
            f"PNM_DATABASE_URL names a {backend} database; use sqlite:///path/to/file.db "
            "or postgresql://user@host/dbname."
        )
    return url


def default_database_url(root: Path | None = None) -> str:
    """Return the SQLite URL of the default database file under ``instance/``.

    In a checkout that folder is the checkout's own; installed with pip (no checkout around
    this file), it is in the working directory, never in site-packages.
    """
    if root is None:
        here = Path(__file__).resolve().parent
        root = here if (here / "pyproject.toml").is_file() else Path.cwd()
    return f"sqlite:///{root / DEFAULT_DATABASE_FILE}"


MIN_SECRET_LENGTH = 16
GOOD_SECRET_LENGTH = 32
_KEY = re.compile(r"[A-Za-z0-9._~-]{1,200}")
_TENANT = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class KeyPair:
    """One API key, its secret, and the tenant its deliveries belong to."""

    key: str
    secret: str
    tenant: str


class _Keys:
    """Collect key pairs from every source, refusing a key named twice with two secrets."""

    def __init__(self) -> None:
        self.pairs: dict[str, KeyPair] = {}
        self.warnings: list[str] = []
        self.urls: dict[str, str] = {}  # each [tenant] section's plugnmeet_url

    def add(
        self, key: str, secret: str, tenant: str | None, where: str, key_where: str = ""
    ) -> None:
        if not _KEY.fullmatch(key):
            raise ConfigError(
                f"{key_where or where} has the key {key[:40]!r}, which is not an API key; keys "
                "are letters, digits, '.', '_', '~' or '-', as client.api_key in plugNmeet's "
                "config.yaml."
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{where} gives key {key!r} a secret shorter than {MIN_SECRET_LENGTH} characters; "
                f"{_WHERE_KEYS_COME_FROM} (plugNmeet makes 36-character secrets)."
            )
        if len(secret) < GOOD_SECRET_LENGTH:
            self.warnings.append(
                f"{where}: the secret of key {key!r} is shorter than {GOOD_SECRET_LENGTH} "
                "characters; a longer random secret is harder to guess."
            )
        known = self.pairs.get(key)
        if known is not None and known.secret != secret:
            raise ConfigError(f"{where} names key {key!r} again with another secret; keep one.")
        if known is not None and tenant is not None and known.tenant not in (key, tenant):
            raise ConfigError(
                f"{where} puts key {key!r} in tenant {tenant!r}, but it is in "
                f"{known.tenant!r} already; a key belongs to one tenant."
            )
        self.pairs[key] = KeyPair(key, secret, tenant or (known.tenant if known else key))

    def check_tenants(self) -> None:
        """Refuse a key that is its own tenant under a name a [section] also uses."""
        named = {p.tenant for p in self.pairs.values() if p.tenant != p.key}
        for pair in self.pairs.values():
            if pair.tenant == pair.key and pair.key in named:
                raise ConfigError(
                    f"{pair.key!r} is both a key of its own tenant and a [{pair.key}] section of "
                    "PNM_API_KEYS_FILE, which would merge two servers' data; put the key under "
                    "that section, or name the section otherwise."
                )


def _read_keys_file(path_text: str, keys: _Keys) -> None:
    """Read ``PNM_API_KEYS_FILE``: ``key: secret`` lines, grouped under ``[tenant]`` headers."""
    try:
        lines = Path(path_text).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise ConfigError(
            f"PNM_API_KEYS_FILE names {path_text}, which cannot be read ({reason})."
        ) from None
    tenant: str | None = None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        where = f"PNM_API_KEYS_FILE line {number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            tenant = line[1:-1].strip()
            if not _TENANT.fullmatch(tenant):
                raise ConfigError(
                    f"{where} names the tenant {tenant[:40]!r}; a tenant is 1 to 64 letters, "
                    "digits, '.', '_' or '-'."
                )
            continue
        name, equals, value = line.partition("=")
        if equals and name.strip() == "plugnmeet_url":
            if tenant is None:
                raise ConfigError(
                    f"{where} gives a plugnmeet_url outside any [tenant] section; put it under "
                    "the section of the tenant whose server it is (PNM_PLUGNMEET_URL names the "
                    "server of the keys set outside the file)."
                )
            if tenant in keys.urls:
                raise ConfigError(f"{where} gives [{tenant}] a second plugnmeet_url; keep one.")
            keys.urls[tenant] = check_plugnmeet_url(value.strip().strip("\"'"), where)
            continue
        key, sep, secret = line.partition(":")
        if not sep:
            raise ConfigError(
                f"{where} is neither 'key: secret', 'plugnmeet_url = URL' nor '[tenant]'; "
                "write one pair a line, the secret after the first colon."
            )
        secret = secret.strip()
        if len(secret) >= 2 and secret[0] == secret[-1] and secret[0] in "\"'":
            secret = secret[1:-1]  # copied with its quotes from config.yaml
        keys.add(key.strip(), secret, tenant, where)


def check_plugnmeet_url(url: str, where: str) -> str:
    """Return a plugNmeet server's base URL without its trailing slash, or say what to write."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ConfigError(
            f"{where} is not a plugNmeet server's base URL; write it as "
            "https://plugnmeet.example.com (the address plugNmeet's clients use, no path "
            "after it unless plugNmeet is served under one)."
        )
    return url.rstrip("/")


def plugnmeet_servers(
    env: Mapping[str, str],
    pairs: Mapping[str, KeyPair],
    urls: Mapping[str, str],
    primary: str | None = None,
) -> tuple[PlugNmeetServer, ...]:
    """Pair each plugNmeet server URL with the key pair that signs for it.

    ``PNM_PLUGNMEET_URL`` is the server of the main pair (``PNM_API_KEY``'s, or the one read
    from plugNmeet's ``config.yaml``), or of the only tenant; a
    ``plugnmeet_url = …`` line in a ``[tenant]`` section of the keys file is that tenant's,
    signed with the section's last key (the newest, when a key is being rotated).
    """
    servers: dict[str, PlugNmeetServer] = {}
    newest: dict[str, KeyPair] = {}
    for pair in pairs.values():  # in the order they were read
        newest[pair.tenant] = pair
    for tenant, url in urls.items():
        if tenant not in newest:
            raise ConfigError(
                f"PNM_API_KEYS_FILE gives [{tenant}] a plugnmeet_url but no key; add its "
                "'key: secret' line (client.api_key and client.secret of that server)."
            )
        signer = newest[tenant]
        servers[tenant] = PlugNmeetServer(tenant, url, signer.key, signer.secret)
    raw = env.get("PNM_PLUGNMEET_URL", "").strip()
    if raw:
        url = check_plugnmeet_url(raw, "PNM_PLUGNMEET_URL")
        tenants = {p.tenant for p in pairs.values()}
        if primary and primary in pairs:
            pair = pairs[primary]
        elif len(tenants) == 1:
            pair = newest[next(iter(tenants))]
        else:
            raise ConfigError(
                "PNM_PLUGNMEET_URL is set but the keys belong to several tenants and "
                "PNM_API_KEY names none of them; give each tenant's server as "
                "'plugnmeet_url = https://…' in its section of PNM_API_KEYS_FILE."
            )
        if pair.tenant in servers and servers[pair.tenant].url != url:
            raise ConfigError(
                f"PNM_PLUGNMEET_URL and the plugnmeet_url of [{pair.tenant}] name two servers "
                "for one tenant; keep one."
            )
        servers.setdefault(pair.tenant, PlugNmeetServer(pair.tenant, url, pair.key, pair.secret))
    return tuple(servers[t] for t in sorted(servers))


@dataclass(frozen=True, slots=True)
class ReadKeys:
    """The key pairs (in the order read), the warnings about them, each tenant's server URL,
    and the key of the main pair (``PNM_API_KEY``, or plugNmeet's ``config.yaml``)."""

    pairs: dict[str, KeyPair]
    warnings: list[str]
    urls: dict[str, str]
    primary: str | None = None


def read_plugnmeet_config(path_text: str) -> tuple[str, str]:
    """Read ``client.api_key`` and ``client.secret`` from plugNmeet's ``config.yaml``."""
    import yaml

    where = f"PNM_PLUGNMEET_CONFIG names {path_text}, which"
    try:
        data = yaml.safe_load(Path(path_text).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{where} cannot be read ({exc.strerror or type(exc).__name__})."
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise ConfigError(
            f"{where} is not YAML; give the path of plugNmeet's config.yaml."
        ) from None
    client = data.get("client") if isinstance(data, dict) else None
    found = {}
    for name in ("api_key", "secret"):
        value = client.get(name) if isinstance(client, dict) else None
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            raise ConfigError(
                f"{where} has no client.{name}; give the path of plugNmeet's config.yaml "
                "(usually /opt/plugNmeet/config.yaml)."
            )
        found[name] = str(value).strip()
    return found["api_key"], found["secret"]


def parse_api_keys(env: Mapping[str, str]) -> ReadKeys:
    """Read the key pairs, the warnings about them and the tenants' plugNmeet servers.

    ``PNM_API_KEY`` + ``PNM_API_SECRET`` come first, then ``PNM_API_KEYS``
    (``key1:secret1,key2:secret2``), then the file named by ``PNM_API_KEYS_FILE``, the one
    form a secret with any character in it cannot be mis-split in.
    """
    keys = _Keys()
    key = env.get("PNM_API_KEY", "").strip()
    secret = env.get("PNM_API_SECRET", "").strip()
    listed = env.get("PNM_API_KEYS", "").strip()
    keys_file = env.get("PNM_API_KEYS_FILE", "").strip()
    plugnmeet_config = env.get("PNM_PLUGNMEET_CONFIG", "").strip()
    primary = None
    if plugnmeet_config:
        if key or secret:
            raise ConfigError(
                "PNM_PLUGNMEET_CONFIG and PNM_API_KEY/PNM_API_SECRET both give the key pair; "
                "keep one (the config file, so that nothing is copied by hand)."
            )
        key, secret = read_plugnmeet_config(plugnmeet_config)
        where = "PNM_PLUGNMEET_CONFIG (client.secret)"
        keys.add(key, secret, None, where, key_where="PNM_PLUGNMEET_CONFIG (client.api_key)")
        primary = key
    elif key or secret or not (listed or keys_file):
        if not key:
            raise ConfigError(f"PNM_API_KEY is not set; {_WHERE_KEYS_COME_FROM}.")
        if not secret:
            raise ConfigError(f"PNM_API_SECRET is not set or empty; {_WHERE_KEYS_COME_FROM}.")
        keys.add(key, secret, None, "PNM_API_SECRET", key_where="PNM_API_KEY")
        primary = key
    for number, item in enumerate(listed.split(",") if listed else [], start=1):
        key, sep, secret = (part.strip() for part in item.partition(":"))
        if not sep or not key:
            raise ConfigError(
                f"PNM_API_KEYS entry {number} is not 'key:secret'; write the pairs as "
                f"key1:secret1,key2:secret2, or one a line in PNM_API_KEYS_FILE."
            )
        if not secret:
            raise ConfigError(
                f"PNM_API_KEYS entry {number} (key {key!r}) has an empty secret; "
                f"{_WHERE_KEYS_COME_FROM}."
            )
        keys.add(key, secret, None, f"PNM_API_KEYS entry {number}")
    if keys_file:
        _read_keys_file(keys_file, keys)
    keys.check_tenants()
    if not keys.pairs:
        raise ConfigError(
            f"PNM_API_KEYS_FILE holds no 'key: secret' line; {_WHERE_KEYS_COME_FROM}."
        )
    return ReadKeys(keys.pairs, keys.warnings, keys.urls, primary=primary)


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
    if not 0.1 <= value <= 600:
        raise ConfigError(f"{name} must be from 0.1 to 600 seconds, not {raw}.")
    return value


def _token(env: Mapping[str, str], name: str) -> str | None:
    token = env.get(name, "").strip()
    if not token:
        return None
    if len(token) < 16:
        raise ConfigError(
            f"{name} is shorter than 16 characters; use a long random value such as the "
            "output of: openssl rand -hex 32."
        )
    return token


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?")
_UNIT = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}


def _schedule(env: Mapping[str, str], name: str) -> tuple[float, ...] | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    waits = []
    for part in raw.split(","):
        match = _DURATION.fullmatch(part.strip())
        if match is None:
            raise ConfigError(
                f"{name} must list waits like 5s,5m,30m,2h,5h,10h,10h, not {raw[:60]!r}."
            )
        waits.append(float(match.group(1)) * _UNIT[match.group(2)])
    return tuple(waits)


MIN_OUTBOX_LEASE = 5.0


def _lease(env: Mapping[str, str]) -> float:
    lease = _seconds(env, "PNM_OUTBOX_LEASE", 60.0)
    if lease < MIN_OUTBOX_LEASE:
        raise ConfigError(
            f"PNM_OUTBOX_LEASE must be at least {MIN_OUTBOX_LEASE:.0f} seconds, not {lease:g}: "
            "a dispatcher renews the leases of its open sends about once a second."
        )
    return lease


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, not {raw[:20]!r}.")


def _ca_file(env: Mapping[str, str]) -> str | None:
    path = env.get("PNM_PLUGNMEET_CA", "").strip()
    if not path:
        return None
    if not Path(path).is_file():
        raise ConfigError(
            f"PNM_PLUGNMEET_CA names {path}, which is not a file; give the PEM file of the CA "
            "that signed the plugNmeet server's certificate."
        )
    return path


MIN_RECONCILE_INTERVAL = 10.0


def _duration(raw: str) -> float | None:
    """Read one duration (``300``, ``90s``, ``5m``, ``1h``) as seconds, or None."""
    match = _DURATION.fullmatch(raw)
    return None if match is None else float(match.group(1)) * _UNIT[match.group(2)]


def _interval(env: Mapping[str, str]) -> float | None:
    raw = env.get("PNM_RECONCILE_INTERVAL", "").strip().lower()
    if raw in ("off", "0"):
        return None
    if not raw:
        return DEFAULT_RECONCILE_INTERVAL
    seconds = _duration(raw)
    if seconds is None or seconds < MIN_RECONCILE_INTERVAL:
        raise ConfigError(
            f"PNM_RECONCILE_INTERVAL must be one duration of at least 10 s (300, 5m, 1h) or "
            f"off, not {raw[:40]!r}."
        )
    return seconds


def _grace(env: Mapping[str, str]) -> float:
    raw = env.get("PNM_RECONCILE_GRACE", "").strip()
    if not raw:
        return DEFAULT_RECONCILE_GRACE
    seconds = _duration(raw.lower())
    if seconds is None or not 10 <= seconds <= 86400:
        raise ConfigError(
            f"PNM_RECONCILE_GRACE must be one duration from 10 s to 24 h (120, 2m), not "
            f"{raw[:40]!r}: session_ended normally follows a session's end by about 10 s."
        )
    return seconds


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
    read = parse_api_keys(env)
    pairs, warnings = read.pairs, read.warnings
    servers = plugnmeet_servers(env, pairs, read.urls, read.primary)
    warnings.extend(
        f"the plugNmeet server of {s.tenant!r} is asked over plain http: the API secret's "
        "signatures and the answers cross the network readable; use https unless it is on "
        "this host."
        for s in servers
        if s.url.startswith("http://") and urlsplit(s.url).hostname not in LOOPBACK
    )
    leeway = _int(env, "PNM_CLOCK_LEEWAY", DEFAULT_CLOCK_LEEWAY, minimum=0)
    if leeway > MAX_CLOCK_LEEWAY:
        raise ConfigError(
            f"PNM_CLOCK_LEEWAY must be at most {MAX_CLOCK_LEEWAY} seconds, not {leeway}; "
            "a larger leeway keeps expired tokens valid, so set the clocks right (NTP) instead."
        )
    retention = _int(env, "PNM_RETENTION_DAYS", 0, minimum=0)
    return Settings(
        api_keys={pair.key: pair.secret for pair in pairs.values()},
        tenants={p.key: p.tenant for p in pairs.values() if p.tenant != p.key},
        warnings=tuple(warnings),
        database_url=check_database_url(
            env.get("PNM_DATABASE_URL", "").strip() or default_database_url()
        ),
        webhook_path=path,
        max_body_bytes=_int(env, "PNM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024),
        clock_leeway=leeway,
        log_format=log_format,
        log_level=log_level,
        proxy_count=_int(env, "PNM_PROXY_COUNT", 0, minimum=0),
        db_timeout=_seconds(env, "PNM_DB_TIMEOUT", DEFAULT_DB_TIMEOUT),
        admin_token=_token(env, "PNM_ADMIN_TOKEN"),
        metrics_token=_token(env, "PNM_METRICS_TOKEN"),
        retention_days=retention or None,
        rules_file=env.get("PNM_RULES_FILE", "").strip() or None,
        billing_file=env.get("PNM_BILLING_FILE", "").strip() or None,
        invoice_template=env.get("PNM_INVOICE_TEMPLATE", "").strip() or None,
        outbox_retries=_schedule(env, "PNM_OUTBOX_RETRIES") or DEFAULT_OUTBOX_RETRIES,
        outbox_lease=_lease(env),
        dispatcher=_switch(env, "PNM_DISPATCHER", True),
        plugnmeet_servers=servers,
        plugnmeet_ca=_ca_file(env),
        reconcile_interval=_interval(env),
        reconcile_grace=_grace(env),
    )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Where and how gunicorn serves the receiver."""

    host: str
    port: int
    workers: int
    threads: int
    warnings: tuple[str, ...] = ()


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """Read ``HOST``, ``PORT``, ``WEB_CONCURRENCY`` and ``PNM_WORKER_THREADS`` for gunicorn."""
    env = os.environ if env is None else env
    port = _int(env, "PORT", 8000, minimum=0)
    if port > 65535:
        raise ConfigError(f"PORT must be a port number from 0 to 65535, not {port}.")
    # plugNmeet runs on another host, so listen on every interface unless HOST says not.
    host = env.get("HOST", "").strip() or "0.0.0.0"  # noqa: S104
    warnings = []
    if _int(env, "PNM_PROXY_COUNT", 0, minimum=0) and host not in LOOPBACK:
        warnings.append(
            f"PNM_PROXY_COUNT is set but HOST is {host}: a client that reaches the receiver "
            "without the proxy can claim any address in X-Forwarded-For; bind HOST=127.0.0.1 "
            "behind a proxy on this host, or firewall the port."
        )
    return ServerSettings(
        host=host,
        port=port,
        workers=_int(env, "WEB_CONCURRENCY", 2, minimum=1),
        threads=_int(env, "PNM_WORKER_THREADS", 16, minimum=1),
        warnings=tuple(warnings),
    )


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def main() -> int:
    """Check the environment as ``make run`` will use it; print one sentence if it is wrong."""
    try:
        server = load_server_settings()
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in (*server.warnings, *settings.warnings):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
