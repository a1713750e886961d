"""Invoices from the command line: ``invoice draft | issue | list | show | void``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.billing import store
from plugnmeet_webhooks.billing.billing_file import Billing, Customer
from plugnmeet_webhooks.billing.documents import invoice_csv
from plugnmeet_webhooks.billing.invoices import ISSUED, Ledger, Month
from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.output import as_json, table, utc_time
from plugnmeet_webhooks.storage.engine import write_transaction


def billing() -> Billing:
    """The runtime's billing file, or end the command saying how to give one."""
    found = runtime().billing
    if found is None:
        raise click.ClickException(
            "no billing file: set PNM_BILLING_FILE to a TOML file with [issuer], [plans] and "
            "[customers] (see the README's Billing section)."
        )
    return found


def _customer(given: str) -> Customer:
    customers = billing().customers
    if given not in customers:
        known = ", ".join(sorted(customers)) or "none"
        raise click.BadParameter(
            f"{given[:40]!r} is not a customer of the billing file; use one of: {known}.",
            param_hint="--customer",
        )
    return customers[given]


def _month(text: str) -> Month:
    try:
        return Month.parse(text)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="--month") from None


def invoice_table(document: Mapping[str, Any]) -> str:
    """An invoice for a terminal: its lines, then net, tax and total."""
    rows = [
        [
            line["description"],
            line["quantity"],
            line["unit"],
            line["unit_price"] or "-",
            line["amount"],
        ]
        for line in document["lines"]
    ]
    period = document["period"]
    head = (
        f"Invoice {document['number'] or '(draft)'} for {document['customer']}, "
        f"{period['start']} to {period['end']} ({period['timezone']}), {document['status']}"
    )
    body = table(("description", "quantity", "unit", "unit price", "amount"), rows)
    sums = "\n".join(
        f"{name.rjust(8)}  {document[name]} {document['currency']}"
        for name in ("net", "tax", "total")
    )
    notes = "".join(f"\n\nnote: {note}" for note in document.get("notes", ()))
    return f"{head}\n\n{body}\n\n{sums}{notes}"


def _write(data: bytes | str, output: str | None) -> None:
    """Write a document to ``-o FILE`` or standard output (a PDF needs a file or a pipe)."""
    raw = data.encode() if isinstance(data, str) else data
    if output:
        try:
            Path(output).write_bytes(raw)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {_reason(exc)}.") from None
        click.echo(f"Wrote {output} ({len(raw):,} bytes).", err=True)
        return
    if isinstance(data, bytes) and sys.stdout.isatty():
        raise click.UsageError("a PDF is not for the terminal; add -o invoice.pdf.")
    sys.stdout.flush()
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()


def _reason(exc: OSError) -> str:
    """Why a file could not be written, as a few words: "Permission denied"."""
    return exc.strerror or type(exc).__name__


FORMATS = ("table", "json", "csv", "pdf")


def _show(
    document: Mapping[str, Any], fmt: str, output: str | None, pdf: Callable[[], bytes]
) -> None:
    if fmt == "json":
        _write(as_json(document) + "\n", output)
    elif fmt == "csv":
        _write(invoice_csv(document), output)
    elif fmt == "pdf":
        _write(pdf(), output)
    else:
        _write(invoice_table(document) + "\n", output)


@click.group("invoice")
def invoice_group() -> None:
    """Invoices from the billing file's plans: draft, issue, list, show, void."""


def _output_option(fn: Any) -> Any:
    return click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE.")(
        fn
    )


@invoice_group.command("draft")
@click.option("--customer", required=True, help="The customer's name in the billing file.")
@click.option("--month", required=True, help="The month, e.g. 2026-11 (in the customer's zone).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@_output_option
@with_appcontext
def draft_command(customer: str, month: str, fmt: str, output: str | None) -> None:
    """Compute a customer's invoice for a month as it would be now; nothing is stored."""
    chosen, period = _customer(customer), _month(month)
    with database().connect() as conn:
        invoice = store.current_draft(conn, chosen, period, Ledger(conn))
        issued = [
            s.number
            for s in store.listed(conn, chosen.key)
            if s.month == period and s.status == ISSUED
        ]
    if issued:
        click.echo(
            f"note: {chosen.key}'s invoice for {period} is issued as {issued[0]}; what changed "
            "since goes on the next month's draft as an adjustment.",
            err=True,
        )
    _show(invoice.as_dict(), fmt, output, lambda: runtime().invoice_pdf(invoice, billing()))


@invoice_group.command("issue")
@click.option("--month", required=True, help="The month to invoice, e.g. 2026-11.")
@click.option("--customer", help="Only this customer (default: every customer).")
@click.option(
    "--pdf-dir",
    type=click.Path(file_okay=False),
    help="Also write each issued invoice's PDF here, as NUMBER.pdf.",
)
@with_appcontext
def issue_command(month: str, customer: str | None, pdf_dir: str | None) -> None:
    """Issue the month's invoices: numbered, frozen with their PDF; issued ones stay as they are."""
    period = _month(month)
    chosen = [_customer(customer)] if customer else list(billing().customers.values())
    this_month = Month.of(datetime.now(UTC).date())
    if period >= this_month:
        click.echo(
            f"note: {period} has not ended yet (in UTC); usage after this goes on next "
            "month's invoice as an adjustment.",
            err=True,
        )
    folder = Path(pdf_dir) if pdf_dir else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(
                f"cannot write {folder}: {_reason(exc)}; nothing was issued.",
                param_hint="--pdf-dir",
            ) from None
    issued = store.issue_month(database(), billing(), period, chosen, runtime().invoice_pdf)
    unwritten = 0
    for done in issued:
        if isinstance(done, store.IssuedAlready):
            click.echo(str(done))
            continue
        said = f"{done.customer}: issued {done.number}, total {done.total} {done.currency}"
        if folder is not None:
            path = folder / f"{done.number.replace('/', '-')}.pdf"
            try:
                path.write_bytes(done.pdf_bytes)
            except OSError as exc:
                unwritten += 1
                said += (
                    f"; cannot write {path}: {_reason(exc)} (flask --app app invoice show "
                    f"{done.number} --format pdf -o FILE writes it)"
                )
            else:
                said += f": {path}"
        click.echo(f"{said}.")
    if unwritten:
        raise click.ClickException(
            f"the PDF of {unwritten} issued invoice{'' if unwritten == 1 else 's'} could not "
            "be written; the invoices are issued all the same."
        )


@invoice_group.command("list")
@click.option("--customer", help="Only this customer's invoices.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@with_appcontext
def list_command(customer: str | None, fmt: str) -> None:
    """List the issued (and voided) invoices, oldest number first."""
    with database().connect() as conn:
        found = store.listed(conn, customer)
    rows = [
        {
            "number": s.number,
            "customer": s.customer,
            "month": str(s.month),
            "status": s.status,
            "total": s.total,
            "currency": s.currency,
            "issued_at": utc_time(s.issued_at),
        }
        for s in found
    ]
    if fmt == "json":
        click.echo(as_json(rows))
    elif not rows:
        click.echo(
            "No invoices issued yet. Issue a month with: "
            "flask --app app invoice issue --month YYYY-MM"
        )
    else:
        click.echo(table(list(rows[0]), [list(r.values()) for r in rows]))


@invoice_group.command("show")
@click.argument("number")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@_output_option
@with_appcontext
def show_command(number: str, fmt: str, output: str | None) -> None:
    """Show an issued invoice exactly as it was issued (its PDF too)."""
    with database().connect() as conn:
        try:
            found = store.find(conn, number)
        except store.InvoiceError as exc:
            raise click.ClickException(str(exc)) from None
    if fmt == "json" and found.status == ISSUED:
        _write(found.document, output)  # byte for byte as issued
        return
    _show(found.as_dict(), fmt, output, lambda: found.pdf_bytes)


@invoice_group.command("void")
@click.argument("number")
@click.option("--reason", required=True, help="Why, for the record (shown with the invoice).")
@with_appcontext
def void_command(number: str, reason: str) -> None:
    """Void an issued invoice. Its number is never used again; its month may be issued anew."""
    with write_transaction(database()) as conn:
        try:
            voided = store.void(conn, number, reason)
        except store.InvoiceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(
        f"Voided {voided.number} ({voided.customer}, {voided.month}). Issue the month again "
        f"with: flask --app app invoice issue --month {voided.month} --customer {voided.customer}"
    )
