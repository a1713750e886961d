"""Passes in the background, and one at a time across every worker and host.

Every serving process runs a :class:`ReconcileWorker` thread. It looks every ``tick``
seconds whether a pass is due (the last one, over any server, finished more than the
interval ago); if so, it takes the ``reconcile`` lease in the database, looks again (another
process may have just finished one), runs the pass and releases the lease. The command
``flask --app app reconcile`` takes the same lease, so a pass typed by hand never overlaps a
background one either. Nothing here runs on the request path.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.reconcile.reconciler import Reconciler, Report, describe_failure
from plugnmeet_webhooks.storage import leases, passes
from plugnmeet_webhooks.storage.committer import release_memory
from plugnmeet_webhooks.storage.errors import describe

log = logging.getLogger(__name__)

LEASE = "reconcile"
LEASE_SECONDS = 300.0  # renewed each minute of a pass; a pass that died frees it after this


class PassBusy(RuntimeError):
    """Another process is running a pass."""


def holder_name() -> str:
    """Who holds a lease: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_pass(
    engine: Engine,
    reconciler: Reconciler,
    *,
    since: float | None = None,
    holder: str | None = None,
    only_if: Callable[[], bool] | None = None,
) -> Report | None:
    """Run one pass under the lease; raise :class:`PassBusy` when another process runs one.

    ``only_if`` is asked once the lease is held; when it says no, nothing runs (None).
    """
    me = holder or holder_name()
    if not leases.take(engine, LEASE, me, LEASE_SECONDS):
        raise PassBusy(
            "another reconciliation pass is running (a receiver's background pass, or another "
            "command); try again when it has finished"
        )
    try:
        if only_if is not None and not only_if():
            return None
        return reconciler.run(
            since=since, keep=lambda: leases.renew(engine, LEASE, me, LEASE_SECONDS)
        )
    finally:
        leases.release(engine, LEASE, me)


class ReconcileWorker:
    """A background thread that runs a pass once an interval, until stopped."""

    def __init__(
        self,
        engine: Engine,
        reconciler: Reconciler,
        interval: float,
        *,
        tick: float | None = None,
        on_report: Callable[[Report], None] | None = None,
    ) -> None:
        self._engine = engine
        self._reconciler = reconciler
        self._interval = interval
        self._tick = tick if tick is not None else min(30.0, interval / 4)
        self._on_report = on_report
        self._holder = holder_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; the first pass is due at once unless one ran recently."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pnm-reconcile", daemon=True)
            self._thread.start()
            log.info(
                "reconciliation: a pass every %.0f s over %d plugNmeet server(s)",
                self._interval,
                len(self._reconciler.servers),
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; a pass in progress ends with its current call."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _due(self) -> bool:
        last = passes.last_finished(self._engine)
        return last is None or time.time() - last >= self._interval

    def run_once(self) -> Report | None:
        """Run a pass if one is due and nobody else runs one; return its report, or None."""
        if not self._due():
            return None
        try:
            # Looked at again under the lease: another process may have just finished one.
            report = run_pass(
                self._engine, self._reconciler, holder=self._holder, only_if=self._due
            )
        except PassBusy:
            return None
        if report is None:
            return None
        release_memory()  # a catch-up pass holds every answer until it writes: give it back
        for failed in report.failed:  # once per pass; the next pass tries again
            log.warning("%s; the next pass tries again", describe_failure(failed))
        totals = report.totals()
        if any(totals.values()):
            log.info(
                "reconciliation: %s",
                ", ".join(f"{n.replace('_', ' ')} {v}" for n, v in totals.items() if v),
            )
        if self._on_report is not None:
            self._on_report(report)
        return report

    def _run(self) -> None:
        # Workers started together spread their first looks over the first tick.
        self._stop.wait(random.uniform(0, self._tick))  # noqa: S311 - not for security
        while not self._stop.is_set():
            try:
                self.run_once()
            except SQLAlchemyError as exc:
                log.warning(
                    "reconciliation: the database failed, will try again: %s", describe(exc)
                )
            except Exception:  # a bug must not end the thread; the next tick tries again
                log.exception("reconciliation: the pass failed")
            self._stop.wait(self._tick * random.uniform(0.9, 1.1))  # noqa: S311
