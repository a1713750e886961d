"""One runtime per app: what every request, command and background thread of it shares.

The app factory only makes it; nothing here touches the database until it is needed. The
engine is made on first use, the schema is checked once (created in an empty database,
refused with what to run when it is behind), the group committer with the first
delivery. Gunicorn's worker hooks call :meth:`Runtime.start` and :meth:`Runtime.close`;
a test makes its own app, registers its own handlers on ``runtime.registry``, and closes it.
The destination kinds its rules file was read with are ``runtime.kinds``.
"""

from __future__ import annotations

import logging
import threading

import jinja2
from flask import Flask, current_app
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from config import Settings
from plugnmeet_webhooks.billing.billing_file import Billing
from plugnmeet_webhooks.billing.documents import invoice_pdf, load_template
from plugnmeet_webhooks.billing.invoices import Invoice
from plugnmeet_webhooks.handler_registry import Registry
from plugnmeet_webhooks.ingest import Ingest
from plugnmeet_webhooks.logs import configure_logging
from plugnmeet_webhooks.metrics import (
    CachedRead,
    LastPass,
    Metrics,
    OutboxCollector,
    OutboxFigures,
    ReconcileCollector,
)
from plugnmeet_webhooks.reconcile.api import DEFAULT_TIMEOUT as API_TIMEOUT
from plugnmeet_webhooks.reconcile.reconciler import REPAIR_KINDS, Reconciler, Report
from plugnmeet_webhooks.reconcile.worker import ReconcileWorker
from plugnmeet_webhooks.storage import outbox, passes
from plugnmeet_webhooks.storage.batch import Delivery, Result, store_batch
from plugnmeet_webhooks.storage.committer import GroupCommitter
from plugnmeet_webhooks.storage.engine import PoolTimeout, make_engine
from plugnmeet_webhooks.storage.migrate import SchemaBehind, prepare_schema
from plugnmeet_webhooks.storage.retention import Pruner
from plugnmeet_webhooks.workflows.dispatcher import Dispatcher
from plugnmeet_webhooks.workflows.kinds import Kinds
from plugnmeet_webhooks.workflows.kinds import registry as kinds_registry
from plugnmeet_webhooks.workflows.messages import Workflows
from plugnmeet_webhooks.workflows.rules import NO_RULES, Rules, tenant_warnings
from validation import Verifier

log = logging.getLogger(__name__)

EXTENSION = "pnm"
SCHEMA_CHECK_WAIT = 1.0  # seconds a request waits for another thread's schema check


class SchemaCheckBusy(PoolTimeout):
    """Another thread is checking the schema and the database is slow to answer (503)."""


class Runtime:
    """Settings, handlers, verifier and metrics, and, made when first needed, the database."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        rules: Rules = NO_RULES,
        *,
        billing: Billing | None = None,
        invoice_template: jinja2.Template | None = None,
        kinds: Kinds | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.rules = rules
        self.billing = billing
        self._invoice_template = invoice_template
        self.kinds = kinds_registry.copy() if kinds is None else kinds  # what rules may send to
        self.workflows = Workflows(
            rules, several_tenants=len(settings.tenant_names) > 1, billing=billing
        )
        self.verifier = Verifier(settings.api_keys, leeway=settings.clock_leeway)
        self.metrics = Metrics()
        self.ingest = Ingest(registry, self.workflows)
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._committer: GroupCommitter | None = None
        self._schema_current = False
        self._schema_error: str | None = None
        self._schema_lock = threading.Lock()
        self._logging_checked = False
        self._pruner: Pruner | None = None
        self._dispatcher: Dispatcher | None = None
        self._outbox_figures = CachedRead(self._read_outbox)
        self._reconcile_worker: ReconcileWorker | None = None
        self._last_pass = CachedRead(self._read_last_passes)

    @property
    def engine(self) -> Engine:
        """The database engine, made on first use."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = make_engine(
                        self.settings.database_url, timeout=self.settings.db_timeout
                    )
        return self._engine

    @property
    def committer(self) -> GroupCommitter:
        """The group committer that stores deliveries, made on first use."""
        if self._committer is None:
            engine = self.engine
            with self._lock:
                if self._committer is None:
                    self._committer = GroupCommitter(
                        engine, self.store_deliveries, wait_seconds=self.settings.commit_wait
                    )
        return self._committer

    def invoice_pdf(self, invoice: Invoice, billing: Billing) -> bytes:
        """The PDF of an invoice, from the operator's template (``PNM_INVOICE_TEMPLATE``) or
        the built-in one; the template is read once, at start-up or on first use."""
        if self._invoice_template is None:
            self._invoice_template = load_template(self.settings.invoice_template)
        return invoice_pdf(invoice, billing, self._invoice_template)

    def store_deliveries(self, conn: Connection, deliveries: list[Delivery]) -> list[Result]:
        """Store a batch of deliveries and apply each to the ledger (one commit for all)."""
        queued = self.ingest.queued
        results = store_batch(
            self.engine,
            deliveries,
            self.ingest.apply_delivery,
            conn,
            budget=self.settings.db_timeout,
        )
        if self._dispatcher is not None and self.ingest.queued != queued:
            self._dispatcher.wake()  # the batch queued messages, now committed: send them
        return results

    def dispatcher(self) -> Dispatcher:
        """The dispatcher that sends the outbox to the rules' destinations (not started)."""
        if self._dispatcher is None:
            self._dispatcher = Dispatcher(
                self.engine,
                self.rules.destinations,
                schedule=self.settings.outbox_retries,
                lease=self.settings.outbox_lease,
                metrics=self.metrics,
            )
        return self._dispatcher

    def reconciler(self, *, timeout: float = API_TIMEOUT) -> Reconciler:
        """The reconciler of the configured plugNmeet servers (none: it has nothing to do);
        ``timeout``: the seconds each call to their API may take."""
        settings = self.settings
        return Reconciler(
            self.engine,
            self.ingest,
            settings.plugnmeet_servers,
            grace=settings.reconcile_grace,
            ca=settings.plugnmeet_ca,
            timeout=timeout,
            on_api_error=lambda endpoint: self.metrics.plugnmeet_api_errors.labels(endpoint).inc(),
        )

    def count_pass(self, report: Report) -> None:
        """Count a pass's outcome and repairs in the metrics, and send what it queued."""
        for done in report.passes:
            self.metrics.reconcile_passes.labels("failed" if done.error else "completed").inc()
            for kind in REPAIR_KINDS:
                if count := done.count(kind):
                    self.metrics.reconcile_repairs.labels(kind).inc(count)
        if self._dispatcher is not None and any(p.repairs for p in report.passes):
            self._dispatcher.wake()  # a pass that repaired something may have queued messages

    def metrics_page(self) -> tuple[bytes, str]:
        """The Prometheus page: the counters, the outbox as the database has it, and the
        age of the last reconciliation pass."""
        extra: list[Collector] = []
        if self.rules.destinations:
            extra.append(OutboxCollector(self._outbox_figures, sorted(self.rules.destinations)))
        if self.settings.plugnmeet_servers:
            extra.append(ReconcileCollector(self._last_pass))
        return self.metrics.render(*extra)

    def _read_last_passes(self) -> dict[str, LastPass]:
        tenants = sorted({s.tenant for s in self.settings.plugnmeet_servers})
        newest = passes.newest_by_outcome(self.engine, tenants)
        return {
            tenant: LastPass(done.finished_at, done.unresolved)
            for tenant, by_outcome in newest.items()
            if (done := by_outcome.get(passes.COMPLETED)) is not None
        }

    def _read_outbox(self) -> OutboxFigures:
        by_state, oldest = outbox.counts(self.engine)
        return OutboxFigures(by_state, oldest, outbox.backlog(self.engine))

    def schema_problem(self) -> str | None:
        """Check the schema once; return what is wrong with it, or None when it is current.

        An empty database gets the whole schema. A database made by an older version is left
        alone, and the answer says to run ``flask --app app db upgrade``. A database that
        cannot be reached raises (and is checked again next time).
        """
        if self._schema_current or self._schema_error is not None:
            return self._schema_error
        # One thread checks; while the database does not answer, the others do not queue
        # behind it for long: they are answered 503 and retried.
        if not self._schema_lock.acquire(timeout=SCHEMA_CHECK_WAIT):
            raise SchemaCheckBusy("the database schema is being checked; try again")
        try:
            if not self._schema_current and self._schema_error is None:
                try:
                    prepare_schema(self.engine)
                    self._schema_current = True
                except SchemaBehind as exc:
                    log.error("%s", exc)
                    self._schema_error = str(exc)
        finally:
            self._schema_lock.release()
        return self._schema_error

    def forget_schema_check(self) -> None:
        """Check the schema again when next asked (after ``db upgrade`` has changed it)."""
        with self._schema_lock:
            self._schema_current, self._schema_error = False, None

    def ensure_logging(self) -> None:
        """Send log lines where the settings say, unless someone has set logging up already.

        Gunicorn's configuration and the command line set it up themselves; this covers any
        other server (``flask run``, a plain ``gunicorn app:create_app()``).
        """
        if not self._logging_checked:
            self._logging_checked = True
            if not logging.getLogger().handlers:
                configure_logging(self.settings)

    def database(self) -> Engine:
        """Return the engine of a database whose schema is current, or raise SchemaBehind."""
        problem = self.schema_problem()
        if problem is not None:
            raise SchemaBehind(problem)
        return self.engine

    def start(self) -> None:
        """Get a serving process ready: the schema is checked before the first delivery, and
        with ``PNM_RETENTION_DAYS`` the pruner starts."""
        try:
            self.schema_problem()
        except SQLAlchemyError as exc:  # deliveries get 503 until it answers
            log.warning("database not reachable at start (%s); will try again", type(exc).__name__)
        for warning in tenant_warnings(self.rules, self.settings.tenant_names):
            log.warning("%s", warning)
        if self.settings.dispatcher and self.rules.destinations:
            self.dispatcher().start()
        interval = self.settings.reconcile_interval
        if self.settings.plugnmeet_servers and interval and self._reconcile_worker is None:
            self._reconcile_worker = ReconcileWorker(
                self.engine, self.reconciler(), interval, on_report=self.count_pass
            )
            self._reconcile_worker.start()
        days = self.settings.retention_days
        if days is not None and self._pruner is None:
            self._pruner = Pruner(self.engine, days, on_pruned=self.metrics.pruned.inc)
            self._pruner.start()

    def stop_taking(self, grace: float = 1.0) -> None:
        """Begin to stop (SIGTERM): deliveries not stored within ``grace`` seconds get 503."""
        if self._committer is not None:
            self._committer.stop_taking(grace)

    def close(self, timeout: float | None = None) -> None:
        """Finish the deliveries in flight, stop the committer, close every database connection."""
        if self._pruner is not None:
            self._pruner.stop()
        if self._reconcile_worker is not None:
            self._reconcile_worker.stop()
        if self._dispatcher is not None:
            self._dispatcher.stop()
        if self._committer is not None:
            self._committer.close(timeout)
        if self._engine is not None:
            self._engine.dispose()


def init_app(app: Flask, runtime: Runtime) -> None:
    """Keep ``runtime`` as the app's runtime."""
    app.extensions[EXTENSION] = runtime


def of(app: Flask) -> Runtime:
    """Return the runtime of ``app``."""
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime


def current() -> Runtime:
    """Return the runtime of the app handling the current request or command."""
    return of(current_app)
