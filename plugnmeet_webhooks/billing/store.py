"""Issued invoices in the database: numbered without gaps, frozen whole, voided never reused.

Issuing takes the year's next number with an ``UPDATE … RETURNING`` on the year's row of
``invoice_numbers``, which holds that row until the transaction ends, then checks that the
month is not issued yet, and stores the invoice; a refusal rolls the number back. Two
``invoice issue`` running at once therefore wait for each other at the counter, and the
second finds the first's invoice: no number is skipped or used twice.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite

from plugnmeet_webhooks.billing.billing_file import Billing, Customer, Plan
from plugnmeet_webhooks.billing.invoices import (
    ISSUED,
    VOID,
    Billed,
    Invoice,
    Ledger,
    Line,
    Month,
    draft,
)
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import metadata

invoices = Table(
    "invoices",
    metadata,
    Column("number", Text, primary_key=True),
    Column("year", Integer, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("customer", Text, nullable=False),
    Column("month", String(7), nullable=False),
    Column("status", String(8), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", Text, nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("document", Text, nullable=False),
    Column("plan", Text, nullable=False),
    Column("pdf", LargeBinary, nullable=False),
    Column("voided_at", Float),
    Column("void_reason", Text),
)
Index(
    "ux_invoices_issued",
    invoices.c.customer,
    invoices.c.month,
    unique=True,
    sqlite_where=text("status = 'issued'"),
    postgresql_where=text("status = 'issued'"),
)
Index("ix_invoices_customer", invoices.c.customer, invoices.c.month)
invoice_numbers = Table(
    "invoice_numbers",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last", Integer, nullable=False),
)

MAX_REASON = 500


class InvoiceError(ValueError):
    """An invoice cannot be issued, found or voided; the message says why and what to do."""


class IssuedAlready(InvoiceError):
    """The customer's month is issued already (the transaction that found it rolls back)."""

    def __init__(self, customer: str, month: Month, number: str) -> None:
        super().__init__(f"{customer}: {month} is issued already as {number}; nothing changed.")
        self.number = number


@dataclass(frozen=True, slots=True)
class Stored:
    """An invoice as the database keeps it."""

    number: str
    customer: str
    month: Month
    status: str
    currency: str
    total: str
    issued_at: float
    document: str  # the JSON as issued, byte for byte
    plan: Plan
    voided_at: float | None
    void_reason: str | None
    pdf: bytes | None = None  # read by :func:`find` only: a listing leaves the PDFs out

    @property
    def pdf_bytes(self) -> bytes:
        """The PDF as issued (of an invoice read with :func:`find`, which reads it)."""
        assert self.pdf is not None, "a listed invoice has no PDF: read it with find()"
        return self.pdf

    @property
    def lines(self) -> tuple[Line, ...]:
        return tuple(Line.from_dict(line) for line in json.loads(self.document)["lines"])

    def as_dict(self) -> dict[str, Any]:
        """The invoice's JSON: as issued, with its status (and reason) once voided."""
        shown = json.loads(self.document)
        if self.status == VOID:
            shown["status"] = VOID
            shown["void_reason"] = self.void_reason
        return dict(shown)

    def billed(self) -> Billed:
        return Billed(number=self.number, month=self.month, plan=self.plan, lines=self.lines)


def plan_json(plan: Plan) -> str:
    """A plan as JSON, prices as strings, to price the invoice's month again later."""
    return json.dumps({k: str(v) for k, v in dataclasses.asdict(plan).items()}, sort_keys=True)


def _plan(text_: str) -> Plan:
    data = json.loads(text_)
    return Plan(
        key=data["key"],
        currency=data["currency"],
        name=data.get("name", ""),
        monthly_fee=Decimal(data["monthly_fee"]),
        included_minutes=int(data["included_minutes"]),
        per_billable_minute=Decimal(data["per_billable_minute"]),
        per_attendee_minute=Decimal(data["per_attendee_minute"]),
        ai_cost_multiplier=Decimal(data["ai_cost_multiplier"]),
        tax_rate=Decimal(data["tax_rate"]),
    )


def _stored(row: Any) -> Stored:
    return Stored(
        number=row.number,
        customer=row.customer,
        month=Month.parse(row.month),
        status=row.status,
        currency=row.currency,
        total=row.total,
        issued_at=row.issued_at,
        document=row.document,
        plan=_plan(row.plan),
        pdf=bytes(row.pdf) if "pdf" in row._fields else None,
        voided_at=row.voided_at,
        void_reason=row.void_reason,
    )


def listed(conn: Connection, customer: str | None = None) -> list[Stored]:
    """Every stored invoice (of one customer), oldest number first."""
    columns = [c for c in invoices.c if c.name != "pdf"]
    query = select(*columns).order_by(invoices.c.year, invoices.c.sequence)
    if customer is not None:
        query = query.where(invoices.c.customer == customer)
    return [_stored(row) for row in conn.execute(query)]


def find(conn: Connection, number: str) -> Stored:
    """The invoice of that number, or an error that says how to find the numbers."""
    row = conn.execute(select(invoices).where(invoices.c.number == number)).fetchone()
    if row is None:
        raise InvoiceError(
            f"there is no invoice {number[:40]!r}; 'flask --app app invoice list' shows them."
        )
    return _stored(row)


def billed(conn: Connection, customer: str) -> list[Billed]:
    """The customer's invoices that count (issued, not void), for corrections."""
    return [s.billed() for s in listed(conn, customer) if s.status == ISSUED]


def current_draft(conn: Connection, customer: Customer, month: Month, ledger: Ledger) -> Invoice:
    """The customer's draft for a month, with corrections to what was issued before it."""
    return draft(ledger, customer, month, billed(conn, customer.key))


def _next_number(conn: Connection, year: int) -> int:
    """Take the year's next invoice number; its row stays locked until the transaction ends."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    first = dialect.insert(invoice_numbers).values(year=year, last=0)
    conn.execute(first.on_conflict_do_nothing(index_elements=["year"]))
    taken = conn.execute(
        invoice_numbers.update()
        .where(invoice_numbers.c.year == year)
        .values(last=invoice_numbers.c.last + 1)
        .returning(invoice_numbers.c.last)
    )
    return int(taken.scalar_one())


def _issued_already(conn: Connection, customer: str, month: Month) -> str | None:
    found = conn.execute(
        select(invoices.c.number).where(
            invoices.c.customer == customer,
            invoices.c.month == str(month),
            invoices.c.status == ISSUED,
        )
    ).fetchone()
    return None if found is None else str(found[0])


Render = Callable[[Invoice, Billing], bytes]


def issue(
    conn: Connection,
    billing: Billing,
    customer: Customer,
    month: Month,
    render_pdf: Render,
    *,
    now: float | None = None,
) -> Stored:
    """Issue a customer's invoice for a month in ``conn``'s transaction, which the caller
    commits; :class:`IssuedAlready` when it is (roll back then: the number is given back)."""
    now = time.time() if now is None else now
    year = datetime.fromtimestamp(now, UTC).year
    sequence = _next_number(conn, year)
    already = _issued_already(conn, customer.key, month)
    if already is not None:
        raise IssuedAlready(customer.key, month, already)
    number = f"{billing.issuer.invoice_prefix}{year}-{sequence:04d}"
    issued_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    invoice = dataclasses.replace(
        current_draft(conn, customer, month, Ledger(conn)),
        status=ISSUED,
        number=number,
        issued_at=issued_at,
    )
    document = json.dumps(invoice.as_dict(), indent=2, ensure_ascii=False) + "\n"
    pdf = render_pdf(invoice, billing)
    conn.execute(
        invoices.insert().values(
            number=number,
            year=year,
            sequence=sequence,
            customer=customer.key,
            month=str(month),
            status=ISSUED,
            currency=invoice.currency,
            total=str(invoice.total),
            issued_at=now,
            document=document,
            plan=plan_json(invoice.plan),
            pdf=pdf,
        )
    )
    return find(conn, number)


def issue_month(
    engine: Engine,
    billing: Billing,
    month: Month,
    customers: Iterable[Customer],
    render_pdf: Render,
) -> list[Stored | IssuedAlready]:
    """Issue each customer's invoice for a month, one transaction each: what was issued,
    and which were issued already."""
    done: list[Stored | IssuedAlready] = []
    for customer in customers:
        try:
            with write_transaction(engine) as conn:
                done.append(issue(conn, billing, customer, month, render_pdf))
        except IssuedAlready as exc:
            done.append(exc)
    return done


def void(conn: Connection, number: str, reason: str, *, now: float | None = None) -> Stored:
    """Void an issued invoice; its number stays taken, and its month may be issued again."""
    reason = " ".join(reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise InvoiceError(f"give a reason of 1 to {MAX_REASON} characters with --reason.")
    found = find(conn, number)
    if found.status == VOID:
        raise InvoiceError(f"invoice {number} is void already ({found.void_reason}).")
    # A later invoice that corrects this one charged part of its month already: voided
    # alone, the month issued again would charge that part a second time.
    correcting = [
        s.number
        for s in listed(conn, found.customer)
        if s.status == ISSUED and any(line.corrects == number for line in s.lines)
    ]
    if correcting:
        raise InvoiceError(
            f"{correcting[-1]} (issued) corrects {number}; void {correcting[-1]} first, "
            f"then {number}, and issue both months again."
        )
    conn.execute(
        invoices.update()
        .where(invoices.c.number == number, invoices.c.status == ISSUED)
        .values(status=VOID, voided_at=time.time() if now is None else now, void_reason=reason)
    )
    return find(conn, number)
