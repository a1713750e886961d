"""The gunicorn worker: gunicorn's threaded worker, except that a stopping worker first
takes in the connections already waiting on the listening socket.

A connection that has completed its handshake waits in the kernel's queue until a worker
accepts it. gunicorn's own worker stops accepting on ``SIGTERM`` and closes the socket when
it exits, and when the last holder of a socket closes it the kernel resets every
connection still queued there: deliveries that plugNmeet had already sent. This worker
accepts everything queued at that moment, then closes its copy of the socket at once (a
later connection is refused, or waits for the next process if systemd holds the socket),
and answers what it took in as it answers any delivery: 200 once stored, else 503.

gunicorn loads the worker class in its master, so this module must import nothing of the
project: a change to it takes a restart, not a reload.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker


class DrainingWorker(ThreadWorker):
    """``gthread``, with the listening socket's queue taken in before the worker stops."""

    def set_accept_enabled(self, enabled: bool) -> None:
        stopping = not enabled and not self.alive
        if stopping:
            for listener in self.sockets:
                self._take_queued(listener)
        super().set_accept_enabled(enabled)
        if stopping:
            for listener in self.sockets:
                listener.close()

    def _take_queued(self, listener: Any) -> None:
        """Accept every connection queued on ``listener`` now, and hand each to a thread."""
        listener.setblocking(False)
        # The queue holds at most the listen backlog; new arrivals cannot keep this going.
        for _ in range(self.cfg.backlog + 64):
            try:
                client, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError:
                return  # the socket is already closed: nothing is queued on this copy
            client.setblocking(True)
            self.nr_conns += 1
            self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
