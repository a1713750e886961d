"""Gunicorn settings for the receiver: ``gunicorn -c gunicorn.conf.py``.

The master imports only ``config``: the app and its package are loaded by each worker, so
``kill -HUP`` brings up workers running the code on disk.
"""

import glob
import inspect
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from config import ConfigError, load_server_settings, load_settings


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
    sys.exit(1)


_own_metrics_dir = None
try:
    _server = load_server_settings()
    _settings = load_settings()
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
# all of them with one commit (and one wait for the disk) instead of one each. The worker
# is gunicorn's threaded one, except that on SIGTERM it first takes in the connections
# queued on the socket, which the kernel would otherwise reset (plugnmeet_webhooks/serving.py).
worker_class = "plugnmeet_webhooks.serving.DrainingWorker"
threads = _server.threads
# A delivery is answered in milliseconds; a worker stuck longer (a client that stalls
# mid-request, say) is restarted.
timeout = 20
# On SIGTERM a worker answers what it holds: deliveries not yet being stored get 503 after
# a second, and the batch being stored ends within its budget of two database waits.
graceful_timeout = max(20, round(_settings.commit_wait))
# Request line and header limits stay at gunicorn's defaults (4094 / 8190 bytes).
accesslog = "-" if os.environ.get("PNM_ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
errorlog = "-"
# Several receivers (and the test suite) may run on one host: no shared control socket.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Check the database once, before any worker starts: ``flask --app app db check``.

    It runs in a child process so that the master never imports the app.
    """
    # Counts left by an earlier run would be added to this one's; only those files go.
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(metrics_dir, exist_ok=True)
    for leftover in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(leftover)
    for warning in (*_server.warnings, *_settings.warnings):
        server.log.warning("%s", warning)
    try:
        check = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "app", "db", "check"],
            capture_output=True,
            text=True,
            timeout=60 + 2 * _settings.db_timeout,
        )
    except subprocess.TimeoutExpired:
        _fail("the database check did not end in time; check that the database answers.")
    if check.returncode != 0:
        lines = [line for line in check.stderr.splitlines() if line.strip()]
        _fail(lines[-1].removeprefix("Error: ") if lines else "the database check failed.")


def _runtime(worker: Any) -> Any:
    """Return the runtime of the worker's app, or None (another app, or none loaded yet)."""
    from plugnmeet_webhooks import runtime

    # The worker wraps the app it serves (plugnmeet_webhooks/serving.py); unwrap finds it.
    served = getattr(worker, "wsgi", None)
    extensions = {} if served is None else getattr(inspect.unwrap(served), "extensions", {})
    return extensions.get(runtime.EXTENSION)


def post_worker_init(worker: Any) -> None:
    """Set up the worker: its log lines, its runtime, and what SIGTERM does to it."""
    rt = _runtime(worker)
    if rt is None:
        return
    from plugnmeet_webhooks.logs import configure_logging

    configure_logging(rt.settings)
    rt.start()
    gunicorns_own = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        rt.stop_taking()  # only starts a timer: safe in a signal handler
        if callable(gunicorns_own):
            gunicorns_own(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def worker_exit(server: Any, worker: Any) -> None:
    """Close the worker's runtime once gunicorn has answered the requests in flight."""
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
