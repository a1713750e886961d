"""Outbound HTTP with a hard deadline: a connection that a :class:`Watch` can shut.

A read timeout alone restarts with every byte a slow peer drips, so a request has no upper
bound. Here a request made while a :class:`Watch` is set for its thread reports its
connection to it; past the deadline, whoever keeps the time calls :meth:`Watch.expire`,
which shuts the connection, and the blocked read fails at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class Watch:
    """One attempt's deadline: past it, the attempt's connection is shut, whatever the
    destination is doing (a read timeout alone restarts with every byte a slow peer drips)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = False
        self._lock = threading.Lock()
        self._sock: Any = None

    def attach(self, connection: Any) -> None:
        """Follow the socket of the connection the attempt is using now (the socket, which
        the answer keeps reading after a connection that will close has let go of it)."""
        with self._lock:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                self._sock = sock
                if self.expired:
                    self._shut(sock)

    def detach(self) -> None:
        """Stop following the connection: the attempt is over, the connection may serve
        another one."""
        with self._lock:
            self._sock = None

    def expire(self) -> None:
        """End the attempt now: shut its connection (its reads then fail at once)."""
        with self._lock:  # not while the connection is being handed to another attempt
            self.expired = True
            if self._sock is not None:
                self._shut(self._sock)

    @staticmethod
    def _shut(sock: Any) -> None:
        # The plain socket's shutdown, also under TLS: it ends a read blocked in another
        # thread without tearing the TLS object from under it.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watching = threading.local()


class _Watched:
    """A connection that reports its socket to the attempt running in this thread: a reused
    one as the request begins, a new one once it is connected."""

    def _report(self) -> None:
        watch: Watch | None = getattr(_watching, "watch", None)
        if watch is not None:
            watch.attach(self)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._report()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._report()
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTP(_Watched, HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTP


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPS


def watched_pools(pools: int, maxsize: int, **pool_kw: Any) -> urllib3.PoolManager:
    """Connection pools (one per host) whose attempts a :class:`Watch` can end."""
    http = urllib3.PoolManager(num_pools=pools, maxsize=maxsize, **pool_kw)
    http.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
    return http


def watching(watch: Watch | None) -> None:
    """Let the connection the next request in this thread uses report to ``watch``."""
    _watching.watch = watch
