"""The dashboard's Billing page: each customer's draft of their month, issuing a month from
the form, the issued invoices and their downloads, and the page without a billing file."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.billing.store import invoice_numbers, invoices
from plugnmeet_webhooks.web.dashboard import billing as billing_page
from tests.integration.database.test_dashboard import ADMIN, _csrf, login
from tests.support.billing import CORPUS_MONTH, CORPUS_TOTAL, EXAMPLE_BILLING, billing_file
from tests.support.helpers import corpus_bodies, deliver

YEAR = datetime.now(UTC).year  # an invoice is numbered in the year it is issued
FIRST = f"EV-{YEAR}-0001"
IN_THE_CORPUS_MONTH = datetime(2025, 11, 28, 12, 0, tzinfo=UTC)


def _app(settings, tmp_path, text: str | None = EXAMPLE_BILLING):
    path = None if text is None else str(billing_file(tmp_path, text))
    return create_app(replace(settings, admin_token=ADMIN, billing_file=path))


def _signed_in(application):
    client = application.test_client()
    for body in corpus_bodies():
        assert deliver(client, body).status == 200
    login(client)
    return client


@pytest.fixture
def billed(settings, tmp_path):
    """An app with the example billing file and the corpus delivered."""
    application = _app(settings, tmp_path)
    yield application
    runtime.of(application).close()


@pytest.fixture
def client(billed):
    return _signed_in(billed)


@pytest.fixture
def in_the_corpus_month(monkeypatch):
    """The page's clock set to 2025-11-28: this month is the corpus month, last is 2025-10."""
    monkeypatch.setattr(billing_page, "now", lambda: IN_THE_CORPUS_MONTH)


def _page(client) -> str:
    answer = client.get("/dashboard/billing")
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _row(page: str, row_id: str) -> str:
    return re.search(rf'<tr id="{re.escape(row_id)}">(.*?)</tr>', page, re.S).group(1)


def _cells(row: str) -> list[str]:
    cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def _stored(application) -> list[dict]:
    with runtime.of(application).engine.connect() as conn:
        rows = conn.execute(sa.select(invoices).order_by(invoices.c.number)).mappings().all()
    return [dict(r) for r in rows]


def _issue(client, page: str | None = None, **form: str):
    csrf = _csrf(page or _page(client))
    return client.post("/dashboard/billing/issue", data={"csrf": csrf, **form})


def _flashes(page: str) -> list[str]:
    return [
        html.unescape(re.sub(r"\s+", " ", m).strip())
        for m in re.findall(r'<p class="flash [a-z]+" role="status">(.*?)</p>', page, re.S)
    ]


def test_the_page_shows_each_customers_draft_as_invoice_draft_does(
    billed, client, in_the_corpus_month
):
    page = _page(client)
    assert 'href="/dashboard/billing" aria-current="page">Billing</a>' in page
    cells = _cells(_row(page, "draft-acme"))
    assert cells == [
        "ACME Corp acme",
        "Standard",
        "Europe/London",
        "weekly-*, board-*",
        CORPUS_MONTH,
        "30.82",
        "6.16",
        CORPUS_TOTAL,
        "USD",
        "PDF · CSV",
    ]
    command = [
        "invoice",
        "draft",
        "--customer",
        "acme",
        "--month",
        CORPUS_MONTH,
        "--format",
        "json",
    ]
    drafted = json.loads(billed.test_cli_runner().invoke(args=command).output)
    assert (drafted["net"], drafted["tax"], drafted["total"]) == ("30.82", "6.16", CORPUS_TOTAL)
    # The form offers last month, and every customer or one.
    assert re.search(r'<input id="issue-month" name="month" type="month" value="2025-10"', page)
    assert '<option value="acme">ACME Corp (acme)</option>' in page
    assert "No invoices issued yet." in page
    # Nothing the billing file holds for the destinations, nor any token, is on the page.
    assert "cus_123" not in page and ADMIN not in page


def test_a_customers_month_is_the_month_in_their_own_time_zone(client, monkeypatch):
    # 23:30 UTC on 30 June is 00:30 on 1 July in London (BST): ACME is in July already.
    monkeypatch.setattr(billing_page, "now", lambda: datetime(2025, 6, 30, 23, 30, tzinfo=UTC))
    page = _page(client)
    assert "2025-07" in _cells(_row(page, "draft-acme"))
    assert 'href="/dashboard/billing/drafts/acme/2025-07.pdf"' in page
    assert 'type="month" value="2025-05"' in page  # last month, in UTC


def test_issuing_a_month_from_the_form_and_again(billed, client):
    answer = _issue(client, month=CORPUS_MONTH)
    assert (answer.status_code, answer.headers["Location"]) == (303, "/dashboard/billing")
    page = _page(client)
    assert _flashes(page) == [f"Issued {FIRST} to ACME Corp (acme) for {CORPUS_MONTH}: 36.98 USD."]
    assert _cells(_row(page, f"invoice-{FIRST}"))[:5] == [
        FIRST,
        "ACME Corp acme",
        CORPUS_MONTH,
        "issued",
        "36.98 USD",
    ]
    [stored] = _stored(billed)
    assert (stored["number"], stored["customer"], stored["total"]) == (FIRST, "acme", "36.98")

    again = _issue(client, page, month=CORPUS_MONTH, customer="acme")
    assert again.status_code == 303
    page = _page(client)
    assert _flashes(page) == [
        f"acme: {CORPUS_MONTH} is issued already as {FIRST}; nothing changed."
    ]
    assert [s["number"] for s in _stored(billed)] == [FIRST]
    with runtime.of(billed).engine.connect() as conn:  # the number taken was given back
        assert conn.execute(sa.select(invoice_numbers.c.last)).scalar_one() == 1
    listed = billed.test_cli_runner().invoke(args=["invoice", "list", "--format", "json"])
    assert [i["number"] for i in json.loads(listed.output)] == [FIRST]


def test_a_month_not_ended_yet_is_issued_with_a_note(billed, client, in_the_corpus_month):
    assert _issue(client, month=CORPUS_MONTH).status_code == 303
    notes = _flashes(_page(client))
    assert notes[0].startswith(f"Issued {FIRST} ")
    assert notes[1] == (
        f"{CORPUS_MONTH} has not ended yet (in UTC); usage after this goes on next month's "
        "invoice as an adjustment."
    )


def test_issuing_for_many_customers_says_so_in_two_sentences(settings, tmp_path, monkeypatch):
    many = "".join(
        f'[customers.c{n:02d}]\nname = "Customer {n}"\nplan = "standard"\n'
        f'rooms = ["room-{n:02d}"]\n'
        for n in range(12)
    )
    text = EXAMPLE_BILLING + many
    application = _app(settings, tmp_path, text)
    try:
        monkeypatch.setattr(runtime.of(application), "invoice_pdf", lambda *_: b"%PDF-1.7 stub")
        client = _signed_in(application)
        _issue(client, month=CORPUS_MONTH, customer="acme")
        _page(client)
        _issue(client, month=CORPUS_MONTH)
        assert _flashes(_page(client)) == [
            f"Issued 12 invoices for {CORPUS_MONTH}: EV-{YEAR}-0002 to EV-{YEAR}-0013.",
            f"Issued already for {CORPUS_MONTH}, and left as they were: {FIRST}.",
        ]
        assert len(_stored(application)) == 13
    finally:
        runtime.of(application).close()


def test_only_a_post_with_the_sessions_token_issues(billed, client):
    _page(client)
    for form in ({"month": CORPUS_MONTH}, {"month": CORPUS_MONTH, "csrf": "x" * 32}):
        refused = client.post("/dashboard/billing/issue", data=form)
        assert refused.status_code == 400
        assert "sent without its session&#39;s token" in refused.get_data(as_text=True)
    assert client.get(f"/dashboard/billing/issue?month={CORPUS_MONTH}").status_code == 405
    assert _stored(billed) == []
    with runtime.of(billed).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(invoice_numbers)).scalar() == 0


@pytest.mark.parametrize(
    "form, sentence",
    [
        ({"month": "2025-13"}, "A month is written like 2026-11, not &#39;2025-13&#39;."),
        ({"month": ""}, "A month is written like 2026-11, not &#39;&#39;."),
        ({"month": "9999-12"}, "A month is written like 2026-11, not &#39;9999-12&#39;."),
        ({"month": "2025-11", "customer": "nobody"}, "&#39;nobody&#39; is not a customer"),
    ],
)
def test_a_bad_month_or_customer_is_a_400_that_says_why(billed, client, form, sentence):
    answer = _issue(client, **form)
    assert answer.status_code == 400
    assert sentence in answer.get_data(as_text=True)
    assert _stored(billed) == []


def test_a_draft_of_a_month_out_of_range_is_a_400(client):
    for month in ("9999-12", "2025-13", "２０２５-１１"):
        answer = client.get(f"/dashboard/billing/drafts/acme/{month}.csv")
        assert answer.status_code == 400, month
        assert "A month is written like 2026-11" in answer.get_data(as_text=True)


def test_an_issued_invoice_downloads_as_it_was_stored(billed, client):
    _issue(client, month=CORPUS_MONTH)
    page = _page(client)
    assert f'href="/dashboard/billing/invoices/{FIRST}.pdf"' in page
    pdf = client.get(f"/dashboard/billing/invoices/{FIRST}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="{FIRST}.pdf"'
    assert pdf.headers["Cache-Control"] == "no-store"
    assert pdf.data.startswith(b"%PDF")
    assert pdf.data == bytes(_stored(billed)[0]["pdf"])

    sheet = client.get(f"/dashboard/billing/invoices/{FIRST}.csv")
    assert sheet.status_code == 200 and sheet.mimetype == "text/csv"
    assert sheet.headers["Content-Disposition"] == f'attachment; filename="{FIRST}.csv"'
    rows = list(csv.reader(io.StringIO(sheet.get_data(as_text=True))))
    assert rows[0][0] == "number"
    assert rows[-1] == [FIRST, "total", "", "", "", "", CORPUS_TOTAL, "USD"]
    assert {r[0] for r in rows[1:]} == {FIRST}

    missing = client.get(f"/dashboard/billing/invoices/EV-{YEAR}-0002.pdf")
    assert missing.status_code == 404
    assert "There is no invoice of that number." in missing.get_data(as_text=True)
    assert client.get("/dashboard/billing/invoices/EV-2026-0001.txt").status_code == 404


def test_a_void_invoice_is_listed_void_and_still_downloads(billed, client):
    _issue(client, month=CORPUS_MONTH)
    voided = billed.test_cli_runner().invoke(
        args=["invoice", "void", FIRST, "--reason", "wrong <plan>"]
    )
    assert voided.exit_code == 0, voided.output
    page = _page(client)
    cells = _cells(_row(page, f"invoice-{FIRST}"))
    assert cells[3] == "void wrong &lt;plan&gt;"
    assert client.get(f"/dashboard/billing/invoices/{FIRST}.pdf").data.startswith(b"%PDF")
    sheet = client.get(f"/dashboard/billing/invoices/{FIRST}.csv").get_data(as_text=True)
    assert list(csv.reader(io.StringIO(sheet)))[-1][-2:] == [CORPUS_TOTAL, "USD"]


def test_a_draft_downloads_as_csv_and_pdf(billed, client):
    sheet = client.get(f"/dashboard/billing/drafts/acme/{CORPUS_MONTH}.csv")
    assert sheet.status_code == 200
    assert sheet.headers["Content-Disposition"] == (
        f'attachment; filename="draft-acme-{CORPUS_MONTH}.csv"'
    )
    rows = list(csv.reader(io.StringIO(sheet.get_data(as_text=True))))
    assert rows[-1] == ["draft", "total", "", "", "", "", CORPUS_TOTAL, "USD"]
    pdf = client.get(f"/dashboard/billing/drafts/acme/{CORPUS_MONTH}.pdf")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
    assert _stored(billed) == []  # a draft is never stored
    assert client.get("/dashboard/billing/drafts/nobody/2025-11.csv").status_code == 404
    bad = client.get("/dashboard/billing/drafts/acme/2025-1.csv")
    assert bad.status_code == 400
    assert "A month is written like 2026-11" in bad.get_data(as_text=True)


def test_the_billing_files_text_is_shown_escaped(settings, tmp_path, in_the_corpus_month):
    text = EXAMPLE_BILLING.replace('"ACME Corp"', '"ACME <b>\\"Corp\\"</b>"').replace(
        '"board-*"', '"<img src=x>"'
    )
    application = _app(settings, tmp_path, text)
    try:
        client = _signed_in(application)
        page = _page(client)
        assert "<b>" not in page and "<img" not in page
        assert "ACME &lt;b&gt;&#34;Corp&#34;&lt;/b&gt;" in page
        assert "weekly-*, &lt;img src=x&gt;" in page
        _issue(client, page, month=CORPUS_MONTH)
        assert "Issued " + FIRST + " to ACME &lt;b&gt;" in _page(client)
    finally:
        runtime.of(application).close()


def test_without_a_billing_file_the_page_says_how_to_set_one(settings, tmp_path):
    application = _app(settings, tmp_path, None)
    try:
        client = _signed_in(application)
        page = _page(client)
        assert "PNM_BILLING_FILE" in page and 'id="no-billing"' in page
        assert "Billing</a>" not in page  # and no link to it in the navigation
        assert "Billing</a>" not in client.get("/dashboard").get_data(as_text=True)
        refused = _issue(client, page, month=CORPUS_MONTH)
        assert refused.status_code == 400
        assert "There is no billing file" in refused.get_data(as_text=True)
        assert client.get(f"/dashboard/billing/drafts/acme/{CORPUS_MONTH}.csv").status_code == 404
        assert _stored(application) == []
    finally:
        runtime.of(application).close()


def test_a_logged_out_visitor_is_sent_to_the_login(billed):
    visitor = billed.test_client()
    for path in (
        "/dashboard/billing",
        f"/dashboard/billing/drafts/acme/{CORPUS_MONTH}.pdf",
        f"/dashboard/billing/invoices/{FIRST}.pdf",
    ):
        answer = visitor.get(path)
        assert answer.status_code == 303
        assert answer.headers["Location"].startswith("/dashboard/login?next=/dashboard/billing")
    assert visitor.post("/dashboard/billing/issue", data={"month": CORPUS_MONTH}).status_code == 401
    assert _stored(billed) == []
