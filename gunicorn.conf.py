"""Gunicorn settings for the receiver: ``gunicorn -c gunicorn.conf.py``."""

import os
import sys

wsgi_app = "app:create_app()"
# plugNmeet runs on another host, so listen on every interface unless HOST says otherwise.
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"  # noqa: S104
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
# A delivery is small and answered in milliseconds; a client that stalls is cut off.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Request line and header limits stay at gunicorn's defaults (4094 / 8190 bytes).
accesslog = "-" if os.environ.get("PNM_ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
# Several receivers (and the test suite) may run on one host: no shared control socket.
control_socket_disable = True


def on_starting(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    """Refuse to start, with one sentence, when the settings are incomplete."""
    from config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
