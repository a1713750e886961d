"""Start the receiver under a real gunicorn, exactly as ``make run`` does, for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET, ROOT, SECRET


@dataclass
class Server:
    """A running gunicorn: its URL, its process and the file its log goes to."""

    url: str
    process: subprocess.Popen
    log_path: Path
    database_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_listening(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not listen within 30 s:\n{log_path.read_text()}")


# The command ``make run`` runs, from the project's root.
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]


def server_environment(
    tmp_path: Path, *, port: int, workers: int = 2, **env: str
) -> dict[str, str]:
    """The environment of a test receiver: this process's, without its ``PNM_`` settings,
    plus the test key pairs, a database in ``tmp_path`` and ``env``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PNM_")}
    return environment | {
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": SECRET,
        "PNM_API_KEYS": f"{OTHER_KEY}:{OTHER_SECRET}",
        "PNM_DATABASE_URL": f"sqlite:///{tmp_path / 'gunicorn.db'}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        **env,
    }


@contextmanager
def gunicorn(
    tmp_path: Path, *, workers: int = 2, app: str | None = None, **env: str
) -> Iterator[Server]:
    """Run gunicorn with ``gunicorn.conf.py`` on a free port; stop it afterwards.

    ``app`` names another app factory (``module:callable``) in place of the receiver's own.
    """
    port = free_port()
    environment = server_environment(tmp_path, port=port, workers=workers, **env)
    database_url = environment["PNM_DATABASE_URL"]
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        extra = [app] if app else []
        process = subprocess.Popen(
            [*GUNICORN, *extra],
            cwd=ROOT,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_listening(port, process, log_path)
            yield Server(
                f"http://127.0.0.1:{port}/webhook-listener", process, log_path, database_url
            )
        finally:
            stop(process)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a server that still runs, and wait for it; SIGKILL it after ``timeout``."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def race(urls: list[str], body: bytes, copies: int) -> list[tuple[int, str]]:
    """Deliver one body ``copies`` times at the same instant, spread over ``urls``."""
    import json
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from plugnmeet_webhooks.cli.deliveries import post
    from validation import sign

    token = sign(body, KEY, SECRET)
    barrier = threading.Barrier(copies)

    def one(n: int) -> tuple[int, str]:
        barrier.wait()
        status, text = post(urls[n % len(urls)], body, token)
        return status, json.loads(text)["status"]

    with ThreadPoolExecutor(copies) as pool:
        return list(pool.map(one, range(copies)))


def worker_pids(master_pid: int) -> list[int]:
    """Return the pids of the gunicorn workers of a master (its child processes)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def wait_for_workers(master_pid: int, count: int, timeout: float = 30) -> list[int]:
    """Wait until the master has ``count`` workers; return their pids."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(master_pid)
        if len(pids) == count:
            return pids
        time.sleep(0.05)
    raise RuntimeError(f"gunicorn {master_pid} has {worker_pids(master_pid)} workers, not {count}")


def metric(url: str, line_start: str) -> float:
    """Read one sample from the /metrics page of the server whose webhook URL is ``url``."""
    import urllib.request

    page = url.rsplit("/", 1)[0] + "/metrics"
    with urllib.request.urlopen(page, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(line_start + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0
