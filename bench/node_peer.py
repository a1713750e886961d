"""The Express peer's Node side: its packages, installed when missing, and its process.

``bench/express/`` holds the guide's listener (``listener.js``) and its pinned packages
(``package.json``, ``package-lock.json``); ``node_modules`` is installed there by ``npm ci``
the first time the benchmark (or its test) needs it, and is not committed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

EXPRESS = Path(__file__).resolve().parent / "express"
LISTENER = EXPRESS / "listener.js"


Say = Callable[[str], object]


class NodeMissing(RuntimeError):
    """Node.js, npm or the listener's packages are not there and cannot be installed."""


def installed() -> bool:
    """Whether node_modules holds every package at the version package.json pins."""
    pins = json.loads((EXPRESS / "package.json").read_text())["dependencies"]
    for name, version in pins.items():
        manifest = EXPRESS / "node_modules" / name / "package.json"
        try:
            if json.loads(manifest.read_text()).get("version") != version:
                return False
        except (OSError, ValueError):
            return False
    return True


def ensure_installed(say: Say = print) -> str:
    """Return the path of ``node``, installing the listener's packages first if they are
    missing (``npm ci``, from package-lock.json); NodeMissing says what is wrong."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise NodeMissing(
            "the Express peer needs Node.js (18 or newer) and npm, and "
            f"{'node' if not node else 'npm'} is not installed: apt-get install nodejs npm"
        )
    if not installed():
        lock = (EXPRESS / "package-lock.json").exists()
        command = [npm, "ci" if lock else "install", "--no-audit", "--no-fund"]
        say(f"installing the Express peer's packages ({' '.join(command[1:])} in {EXPRESS}) ...")
        done = subprocess.run(command, cwd=EXPRESS, capture_output=True, text=True, timeout=300)
        if done.returncode or not installed():
            raise NodeMissing(
                f"`npm {command[1]}` in {EXPRESS} failed (is the npm registry reachable?):\n"
                + (done.stderr or done.stdout)[-1500:]
            )
    return node


def start(
    prefix: list[str], port: int, secret: str, log_path: Path, *, say: Say = print
) -> subprocess.Popen:
    """Start the listener as one Node process on 127.0.0.1:``port`` (``prefix`` pins it, e.g.
    taskset), logging to ``log_path``; return once it listens."""
    node = ensure_installed(say)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PNM_API_SECRET": secret,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NODE_ENV": "production",
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*prefix, node, str(LISTENER)], cwd=EXPRESS, env=env, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NodeMissing(f"the Express peer did not start:\n{log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise NodeMissing("the Express peer did not listen within 30 s")
