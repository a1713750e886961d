"""Gunicorn settings for the receiver: ``gunicorn -c gunicorn.conf.py``."""

import glob
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from config import ConfigError, load_server_settings


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
    sys.exit(1)


_own_metrics_dir = None
try:
    _server = load_server_settings()
except ConfigError as exc:
    _fail(str(exc))

# Workers count into files here and /metrics adds them up (prometheus_client multiprocess).
# It must be set before a worker imports prometheus_client, so it is set here, in the master.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="pnm-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir

wsgi_app = "app:create_app()"
bind = f"{_server.host}:{_server.port}"
workers = _server.workers
# Threads let one worker take several deliveries at once, and the group committer store
# all of them with one commit (and one wait for the disk) instead of one each.
worker_class = "gthread"
threads = _server.threads
# A delivery is answered in milliseconds; a worker stuck longer (a client that stalls
# mid-request, say) is restarted. Keep it above PNM_DB_TIMEOUT.
timeout = 20
graceful_timeout = 20
# Request line and header limits stay at gunicorn's defaults (4094 / 8190 bytes).
accesslog = "-" if os.environ.get("PNM_ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
# Several receivers (and the test suite) may run on one host: no shared control socket.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Check the settings and the database once, before any worker starts; set up logging."""
    from sqlalchemy.exc import SQLAlchemyError

    from app import create_app
    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.logs import configure_logging

    # Counts left by an earlier run would be added to this one's; only those files go.
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for leftover in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(leftover)

    try:
        checked = runtime.of(create_app())
        # Workers are forked from this process: they inherit where log lines go.
        configure_logging(checked.settings)
        for warning in (*_server.warnings, *checked.settings.warnings):
            logging.getLogger("config").warning("%s", warning)
        problem = checked.schema_problem()
    except ConfigError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        _fail(
            f"cannot open the database named by PNM_DATABASE_URL ({type(cause).__name__}); "
            "check that it is running and that the URL is right."
        )
    else:
        checked.close()  # no connection may cross the fork into a worker
        if problem:
            _fail(problem)


def _runtime(worker: Any) -> Any:
    """Return the runtime of the worker's app, or None (another app, or none loaded yet)."""
    from plugnmeet_webhooks import runtime

    extensions = getattr(getattr(worker, "wsgi", None), "extensions", {})
    return extensions.get(runtime.EXTENSION)


def post_worker_init(worker: Any) -> None:
    """Start the worker's runtime: the schema is checked before the first delivery."""
    if (rt := _runtime(worker)) is not None:
        rt.start()


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's runtime: queued deliveries are stored and answered, then it closes.

    Gunicorn has already waited (up to graceful_timeout) for the requests in flight, so the
    writer has little or nothing left; the wait here is bounded all the same.
    """
    if (rt := _runtime(worker)) is not None:
        rt.close(timeout=5)


def child_exit(server: Any, worker: Any) -> None:
    """Let the metrics forget a worker that has gone (its counters are kept)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this configuration made."""
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
