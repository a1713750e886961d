"""Where log lines go: stderr, as text or as one JSON object per line.

The entry points call :func:`configure_logging` once: gunicorn's configuration for the
server, the command line for its commands. The app factory does not, so making an app
changes no global state.
"""

from __future__ import annotations

import logging
import sys

from config import Settings


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(name)s] %(message)s")


_HANDLER_MARK = "_pnm_handler"


def configure_logging(settings: Settings) -> None:
    """Send log lines to stderr, as text or as one JSON object per line."""
    if settings.log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        formatter: logging.Formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    else:
        formatter = _TextFormatter()
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Alembic narrates every schema check at INFO; 'flask db upgrade' reports what it did.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))
    quiet_http_client()


def quiet_http_client() -> None:
    """Keep urllib3's own log lines out, whatever ``PNM_LOG_LEVEL`` says: at DEBUG it writes
    each request line, with a Slack URL's secret path and any ``?token=``, and some of its
    WARNINGs hold a URL too."""
    logging.getLogger("urllib3").setLevel(logging.ERROR)
