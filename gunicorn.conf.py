"""Gunicorn settings for the receiver: ``gunicorn -c gunicorn.conf.py``."""

import os
import sys

from config import ConfigError, load_server_settings


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


try:
    _server = load_server_settings()
except ConfigError as exc:
    _fail(str(exc))

wsgi_app = "app:create_app()"
bind = f"{_server.host}:{_server.port}"
workers = _server.workers
worker_class = "sync"
# A delivery is small and answered in milliseconds; a client that stalls is cut off.
timeout = 30
graceful_timeout = 20
# Request line and header limits stay at gunicorn's defaults (4094 / 8190 bytes).
accesslog = "-" if os.environ.get("PNM_ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
# Several receivers (and the test suite) may run on one host: no shared control socket.
control_socket_disable = True


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """Check the settings and the database once, before any worker starts."""
    import storage
    from config import load_settings

    try:
        settings = load_settings()
        engine = storage.make_engine(settings.database_url, timeout=settings.db_timeout)
        try:
            storage.prepare_schema(engine)
        finally:
            engine.dispose()
    except (ConfigError, storage.UnsupportedDatabase, storage.SchemaBehind) as exc:
        _fail(str(exc))
    except storage.StorageError as exc:
        cause = getattr(exc, "orig", None) or exc
        _fail(
            f"cannot open the database named by PNM_DATABASE_URL ({type(cause).__name__}); "
            "check that it is running and that the URL is right."
        )
