"""An invoice's documents: CSV, and a PDF rendered from a Jinja2 HTML template.

The PDF is made by WeasyPrint, which lays out HTML and CSS paged media: the template's
``@page`` rules number the pages, and a table's ``<thead>`` repeats on every page it spans.
``PNM_INVOICE_TEMPLATE`` names an operator's own template; it gets the same values as the
built-in one (``invoice``, ``issuer``, ``customer``, ``money``). Templates may load images
and styles from the files of the template's folder and ``data:`` URLs only: nothing is
fetched from the network, and no other file is read.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jinja2
from babel.numbers import format_currency

from config import ConfigError
from plugnmeet_webhooks.billing.billing_file import Billing
from plugnmeet_webhooks.billing.invoices import Invoice
from plugnmeet_webhooks.text import spreadsheet_safe

# WeasyPrint tells each step of a render at INFO; the receiver's log has no use for them.
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = TEMPLATES / "invoice.html"
CSV_FIELDS = ("kind", "description", "quantity", "unit", "unit_price", "amount")


def invoice_csv(document: Mapping[str, Any]) -> str:
    """The invoice's lines as CSV, then its net, tax and total as the last rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("number", *CSV_FIELDS, "currency"))
    number = document["number"] or "draft"
    for line in document["lines"]:
        writer.writerow(
            (
                number,
                *(
                    spreadsheet_safe(line[f]) if isinstance(line[f], str) else ""
                    for f in CSV_FIELDS
                ),
                document["currency"],
            )
        )
    for name in ("net", "tax", "total"):
        writer.writerow((number, name, "", "", "", "", document[name], document["currency"]))
    return out.getvalue()


def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def load_template(path: str | None) -> jinja2.Template:
    """The invoice template: the operator's (``PNM_INVOICE_TEMPLATE``) or the built-in one."""
    chosen = Path(path) if path else DEFAULT_TEMPLATE
    try:
        return _environment(chosen.parent).get_template(chosen.name)
    except jinja2.TemplateNotFound:
        raise ConfigError(f"PNM_INVOICE_TEMPLATE names {path}, which cannot be read.") from None
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"PNM_INVOICE_TEMPLATE ({path}) is not a valid template: {exc.message} "
            f"(line {exc.lineno})."
        ) from None


def invoice_html(invoice: Invoice, billing: Billing, template: jinja2.Template) -> str:
    """The invoice as HTML, from the template."""
    document = invoice.as_dict()

    def money(amount: str | Decimal | None) -> str:
        if amount is None:
            return "—"
        return str(format_currency(Decimal(amount), invoice.currency, locale="en"))

    return template.render(
        invoice=document,
        issuer=billing.issuer,
        customer=invoice.customer,
        plan=invoice.plan,
        money=money,
    )


def _template_folder_only(folder: Path) -> Any:
    """WeasyPrint's fetcher, kept to ``data:`` URLs and the files of the template's folder:
    no network, and no file elsewhere (a template cannot attach the env file)."""
    from weasyprint.urls import URLFetcher

    class TemplateFolderFetcher(URLFetcher):
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("file:"):
                path = Path(url2pathname(urlsplit(url).path)).resolve()
                if folder.resolve() not in path.parents:
                    raise ValueError("an invoice template reads the files of its folder only")
            return super().fetch(url, headers)

    return TemplateFolderFetcher(allowed_protocols=("file", "data"), allow_redirects=False)


def invoice_pdf(invoice: Invoice, billing: Billing, template: jinja2.Template) -> bytes:
    """The invoice as a PDF an operator can send."""
    import weasyprint  # loaded on first use: it brings Pango, which the receiver needs not

    html = invoice_html(invoice, billing, template)
    base = Path(template.filename or DEFAULT_TEMPLATE).parent
    fetcher = _template_folder_only(base)
    pdf = weasyprint.HTML(string=html, base_url=str(base), url_fetcher=fetcher).write_pdf()
    assert pdf is not None
    return bytes(pdf)
