"""The dashboard's Billing page: this month's drafts, the issued invoices, issuing a month.

It reads and issues through the same code as the ``invoice`` commands (``billing.store``:
``current_draft``, ``listed``, ``find``, ``issue_month``; the runtime's ``invoice_pdf``), so
the page and ``flask invoice draft``, ``list`` and ``issue`` always agree. Without a billing
file (``PNM_BILLING_FILE``) the page says how to set one, and invoices issued before stay
downloadable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection

from plugnmeet_webhooks.billing import store
from plugnmeet_webhooks.billing.billing_file import Billing, Customer
from plugnmeet_webhooks.billing.documents import invoice_csv
from plugnmeet_webhooks.billing.invoices import Invoice, Ledger, Month
from plugnmeet_webhooks.runtime import current
from plugnmeet_webhooks.text import counted
from plugnmeet_webhooks.web.dashboard.access import check_csrf, login_required

NO_BILLING = (
    "There is no billing file: set PNM_BILLING_FILE to a TOML file with [issuer], [plans] and "
    "[customers], and restart the receiver."
)
FORMATS = "any(csv, pdf)"
FLASHED_ONE_BY_ONE = 10  # more outcomes of one issue than this are said in two sentences
MIMETYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class Draft:
    """A customer's draft for the month they are in now, in their own time zone."""

    customer: Customer
    invoice: Invoice

    @property
    def month(self) -> Month:
        return self.invoice.month


def add_routes(bp: Blueprint) -> None:
    """Give the dashboard its Billing page, its downloads and its issue form."""
    bp.add_url_rule("/billing", "billing", billing_page)
    bp.add_url_rule("/billing/issue", "billing_issue", issue_month, methods=["POST"])
    bp.add_url_rule(
        f"/billing/drafts/<customer>/<month>.<{FORMATS}:fmt>", "billing_draft", draft_document
    )
    bp.add_url_rule(
        f"/billing/invoices/<path:number>.<{FORMATS}:fmt>", "billing_invoice", invoice_document
    )
    bp.context_processor(_billing_on)


def _billing_on() -> dict[str, Any]:
    """Whether the navigation links to the Billing page: only with a billing file."""
    return {"billing_on": current().billing is not None}


def now() -> datetime:
    """The time now, in UTC (a test sets its own)."""
    return datetime.now(UTC)


def this_month(customer: Customer) -> Month:
    """The month a customer is in now, in their own time zone."""
    return Month.of(now().astimezone(customer.zone).date())


def last_month() -> Month:
    """The month before this one, in UTC: what the issue form offers first."""
    return Month.of(now().date().replace(day=1) - timedelta(days=1))


def drafts(conn: Connection, billing: Billing) -> list[Draft]:
    """Each customer's draft for their current month, as ``invoice draft`` computes it."""
    ledger = Ledger(conn)  # the reports of a period, read once for every customer they cover
    return [
        Draft(customer, store.current_draft(conn, customer, this_month(customer), ledger))
        for customer in billing.customers.values()
    ]


@login_required
def billing_page() -> str:
    """The customers with their month's draft, the invoices issued, the form to issue."""
    rt = current()
    billing = rt.billing
    with rt.database().connect() as conn:
        issued = store.listed(conn)
        found = [] if billing is None else drafts(conn, billing)
    return render_template(
        "dashboard/billing.html",
        billing=billing,
        drafts=found,
        invoices=list(reversed(issued)),  # newest number first
        names={} if billing is None else {k: c.name for k, c in billing.customers.items()},
        last_month=last_month(),
    )


@login_required
def issue_month() -> ResponseReturnValue:
    """Issue a month's invoices (every customer's, or one's); then back to the page, which
    says what was issued and what was issued already."""
    check_csrf()
    rt = current()
    billing = rt.billing
    if billing is None:
        abort(400, NO_BILLING)
    try:
        month = Month.parse(request.form.get("month", ""))
    except ValueError as exc:
        abort(400, _sentence(exc))
    key = request.form.get("customer", "")
    if key and key not in billing.customers:
        abort(400, f"{key[:40]!r} is not a customer of the billing file.")
    chosen = [billing.customers[key]] if key else list(billing.customers.values())
    done = store.issue_month(rt.database(), billing, month, chosen, rt.invoice_pdf)
    issued = [o for o in done if isinstance(o, store.Stored)]
    already = [o for o in done if isinstance(o, store.IssuedAlready)]
    if len(done) <= FLASHED_ONE_BY_ONE:
        for outcome in done:
            if isinstance(outcome, store.IssuedAlready):
                flash(str(outcome), "note")
            else:
                name = billing.customers[outcome.customer].name
                flash(
                    f"Issued {outcome.number} to {name} ({outcome.customer}) for "
                    f"{outcome.month}: {outcome.total} {outcome.currency}.",
                    "ok",
                )
    else:  # the messages travel in the session cookie, which holds 4 kB
        if issued:
            span = (
                issued[0].number
                if len(issued) == 1
                else f"{issued[0].number} to {issued[-1].number}"
            )
            flash(f"Issued {counted(len(issued), 'invoice')} for {month}: {span}.", "ok")
        if already:
            shown = ", ".join(o.number for o in already[:3]) + (", …" if len(already) > 3 else "")
            flash(f"Issued already for {month}, and left as they were: {shown}.", "note")
    if not done:
        flash("The billing file has no customers: nothing was issued.", "note")
    if issued and month >= Month.of(now().date()):
        flash(
            f"{month} has not ended yet (in UTC); usage after this goes on next month's "
            "invoice as an adjustment.",
            "note",
        )
    return redirect(url_for("dashboard.billing"), code=303)


@login_required
def draft_document(customer: str, month: str, fmt: str) -> Response:
    """A customer's draft for a month as CSV or PDF, computed now (nothing is stored)."""
    rt = current()
    billing = rt.billing
    if billing is None or customer not in billing.customers:
        abort(404, "There is no such customer in the billing file.")
    try:
        period = Month.parse(month)
    except ValueError as exc:
        abort(400, _sentence(exc))
    chosen = billing.customers[customer]
    with rt.database().connect() as conn:
        invoice = store.current_draft(conn, chosen, period, Ledger(conn))
    name = f"draft-{chosen.key}-{period}.{fmt}"
    if fmt == "csv":
        return _attachment(invoice_csv(invoice.as_dict()).encode(), name, fmt)
    return _attachment(rt.invoice_pdf(invoice, billing), name, fmt)


@login_required
def invoice_document(number: str, fmt: str) -> Response:
    """An issued (or void) invoice as it was issued: its stored PDF, or its CSV."""
    with current().database().connect() as conn:
        try:
            found = store.find(conn, number)
        except store.InvoiceError:
            abort(404, "There is no invoice of that number.")
    if fmt == "csv":
        return _attachment(invoice_csv(found.as_dict()).encode(), f"{found.number}.csv", fmt)
    return _attachment(found.pdf_bytes, f"{found.number}.pdf", fmt)


def _sentence(exc: ValueError) -> str:
    """An error's message as a sentence: a capital first, a full stop last."""
    text = str(exc)
    return f"{text[:1].upper()}{text[1:]}."


def _attachment(data: bytes, filename: str, fmt: str) -> Response:
    """A download: saved under its own name, never kept by a cache on the way."""
    response = Response(data, mimetype=MIMETYPES[fmt])
    safe = _UNSAFE_IN_NAME.sub("-", filename)  # a prefix may hold '/'
    response.headers["Content-Disposition"] = f'attachment; filename="{safe}"'
    response.headers["Cache-Control"] = "no-store"
    return response
