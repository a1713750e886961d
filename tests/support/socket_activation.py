"""Hold a listening socket and pass it to a process as systemd's socket activation does.

systemd creates the socket, keeps it open across restarts of the service, and starts the
service with the socket as file descriptor 3 and ``LISTEN_FDS=1``, ``LISTEN_PID=<its pid>``.
Connections made while no process serves the socket wait in the kernel's queue.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SD_LISTEN_FDS_START = 3


@contextmanager
def held_socket(backlog: int = 2048) -> Iterator[socket.socket]:
    """A listening TCP socket on a free loopback port, held open by this process."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    try:
        yield listener
    finally:
        listener.close()


def spawn_with_socket(
    argv: list[str],
    listener: socket.socket,
    *,
    env: dict[str, str],
    cwd: Path | str,
    log_path: Path,
) -> subprocess.Popen:
    """Start ``argv`` with ``listener`` as its fd 3 and the ``LISTEN_*`` variables set.

    ``LISTEN_PID`` must be the pid of the process that reads it: a small trampoline puts
    its own pid there and then replaces itself with the program, which keeps that pid.
    """
    fd = listener.fileno()
    environment = {k: v for k, v in env.items() if not k.startswith("LISTEN_")}
    environment["LISTEN_FDS"] = "1"
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-c", _TRAMPOLINE, str(fd), *argv],
            cwd=cwd,
            env=environment,
            pass_fds=(fd,),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


_TRAMPOLINE = f"""
import os, sys
fd = int(sys.argv[1])
if fd != {SD_LISTEN_FDS_START}:
    os.dup2(fd, {SD_LISTEN_FDS_START})
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(sys.argv[2], sys.argv[2:])
"""


def address(listener: socket.socket) -> tuple[str, int]:
    host, port = listener.getsockname()[:2]
    return host, port


def inherited_by(pid: int, listener: socket.socket) -> bool:
    """Whether process ``pid`` holds ``listener`` (the same socket, by its inode)."""
    inode = os.fstat(listener.fileno()).st_ino
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return f"socket:[{inode}]" in links
