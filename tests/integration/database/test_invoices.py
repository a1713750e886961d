"""Invoices over the public corpus: every line and total as written out here, months in the
customer's time zone, issued invoices that never change, corrections on the next draft,
gapless numbers under two issuers at once, and the PDF's text."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pypdf

from plugnmeet_webhooks import runtime
from tests.support.billing import EXAMPLE_BILLING, billing_file
from tests.support.helpers import (
    CORPUS,
    KEY,
    ROOT,
    SECRET,
    changed_body,
    corpus_json,
    deliver,
    report,
)

YEAR = datetime.now(UTC).year
CORPUS_START = 1764171000  # the corpus room's creation_time: 2025-11-26 15:30 UTC
TIMES = re.compile(rb'"(created_at|creation_time|joined_at)":"(\d+)"')


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _deliver_corpus(client: Any, *, shift: int = 0, room_id: str | None = None) -> None:
    for path in CORPUS:
        body = TIMES.sub(lambda m: b'"%s":"%d"' % (m[1], int(m[2]) + shift), path.read_bytes())
        if room_id is not None:
            body = body.replace(b'"room_id":"weekly-standup"', f'"room_id":"{room_id}"'.encode())
            body = body.replace(b"RM_hK3v9QpZt2Lx", f"RM_{room_id}".encode())
            body = re.sub(
                rb'"id":"([^"]+)"', lambda m: b'"id":"%s-%s"' % (m[1], room_id.encode()), body
            )
        assert deliver(client, body).status == 200


def _billing_app(make_app: Any, tmp_path: Path, text: str = EXAMPLE_BILLING) -> Any:
    return make_app(billing_file=str(billing_file(tmp_path, text)))


def _invoke(app: Any, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result


def _draft(app: Any, customer: str, month: str) -> dict[str, Any]:
    result = _invoke(
        app, "invoice", "draft", "--customer", customer, "--month", month, "--format", "json"
    )
    return json.loads(result.stdout)


def _draft_pdf(app: Any, out: Path) -> None:
    """Write acme's draft for the corpus month as a PDF to ``out``."""
    _invoke(
        app,
        "invoice",
        "draft",
        "--customer",
        "acme",
        "--month",
        "2025-11",
        "--format",
        "pdf",
        "-o",
        str(out),
    )


def _pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_example_file_over_the_corpus(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    _deliver_corpus(app.test_client())
    rooms = report(app, "rooms")["total"]

    draft = _draft(app, "acme", "2025-11")

    # The figures, written out from the corpus: one 43-minute session (2565 s, rounded up),
    # the attendance report's attendee minutes, and the cost each usage artifact reported.
    assert rooms["billable_minutes"] == 43
    attendee_minutes = rooms["attendee_minutes"]
    assert attendee_minutes == 124
    multiplier = Decimal("1.25")
    reported = {
        "AI text chat interaction": Decimal("0.004845"),
        "AI text chat summarization": Decimal("0.000596"),
        "chat translation": Decimal("0.3646"),
        "meeting summary": Decimal("0.0113"),
        "speech transcription": Decimal("0.078517"),
    }
    expected_lines = [
        ("monthly_fee", "1", "month", "29.00", Decimal("29.00")),
        ("minutes", "0", "minute", "0.04", Decimal("0.00")),  # 43 of 100 included
        ("attendee_minutes", "124", "minute", "0.01", cents(124 * Decimal("0.01"))),
        *(
            ("ai_usage", str(cost), "USD reported", "1.25", cents(cost * multiplier))
            for cost in reported.values()
        ),
        ("ai_usage", "1", "artifact", None, Decimal("0.00")),  # synthesized speech: no cost
    ]
    got = [
        (line["kind"], line["quantity"], line["unit"], line["unit_price"], Decimal(line["amount"]))
        for line in draft["lines"]
    ]
    assert got == expected_lines
    assert [cents(c * multiplier) for c in reported.values()] == [
        Decimal("0.01"), Decimal("0.00"), Decimal("0.46"), Decimal("0.01"), Decimal("0.10"),
    ]  # fmt: skip
    descriptions = [line["description"] for line in draft["lines"]]
    assert descriptions[0] == "Standard plan, November 2025"
    assert descriptions[1] == "Billable minutes beyond the 100 included (43 used in 1 session)"
    for name, description in zip(reported, descriptions[3:8], strict=True):
        assert description.startswith(f"AI usage: {name} (1 artifact, ")
    assert "synthesized speech (listed, not charged)" in descriptions[8]
    net = sum(amount for *_, amount in expected_lines)
    assert net == Decimal("30.82")
    tax = cents(net * Decimal("0.20"))
    assert (draft["net"], draft["tax"], draft["total"]) == (str(net), str(tax), str(net + tax))
    assert draft["total"] == "36.98"
    assert draft["status"] == "draft" and draft["number"] is None
    assert draft["currency"] == "USD" and draft["customer"] == "acme"
    assert draft["period"] == {
        "start": "2025-11-01",
        "end": "2025-11-30",
        "timezone": "Europe/London",
    }

    # A draft stores nothing.
    assert _invoke(app, "invoice", "list").output.startswith("No invoices issued yet")
    # A month without usage is the monthly fee alone.
    december = _draft(app, "acme", "2025-12")
    assert [line["amount"] for line in december["lines"]] == ["29.00", "0.00", "0.00"]
    assert december["total"] == "34.80"

    # The table and the CSV say the same.
    table = _invoke(app, "invoice", "draft", "--customer", "acme", "--month", "2025-11").stdout
    assert "total  36.98 USD" in table and "Attendee minutes" in table
    csv_text = _invoke(
        app, "invoice", "draft", "--customer", "acme", "--month", "2025-11", "--format", "csv"
    ).stdout
    rows = csv_text.strip().splitlines()
    assert rows[0] == "number,kind,description,quantity,unit,unit_price,amount,currency"
    assert rows[-1] == "draft,total,,,,,36.98,USD" and len(rows) == 1 + 9 + 3


def test_a_month_is_midnight_to_midnight_in_the_customer_zone(make_app, tmp_path):
    # The session starts at 23:30 UTC on 30 November: still November in London (UTC+0),
    # but already 1 December in Tokyo (UTC+9), and still November in New York.
    start = int(datetime(2025, 11, 30, 23, 30, tzinfo=UTC).timestamp())
    text = EXAMPLE_BILLING.replace("included_minutes = 100", "included_minutes = 0")
    tokyo = text.replace('timezone = "Europe/London"', 'timezone = "Asia/Tokyo"')
    app = _billing_app(make_app, tmp_path, tokyo)
    _deliver_corpus(app.test_client(), shift=start - CORPUS_START)

    def minutes(draft: dict[str, Any]) -> str:
        return next(line["quantity"] for line in draft["lines"] if line["kind"] == "minutes")

    november, december = _draft(app, "acme", "2025-11"), _draft(app, "acme", "2025-12")
    assert (minutes(november), minutes(december)) == ("0", "43")
    assert december["period"] == {
        "start": "2025-12-01",
        "end": "2025-12-31",
        "timezone": "Asia/Tokyo",
    }

    new_york = tmp_path / "ny.toml"
    new_york.write_text(text.replace('timezone = "Europe/London"', 'timezone = "America/New_York"'))
    other = make_app(billing_file=str(new_york))
    assert (
        minutes(_draft(other, "acme", "2025-11")),
        minutes(_draft(other, "acme", "2025-12")),
    ) == (
        "43",
        "0",
    )


def _late_artifact(cost: str, created_at: int) -> bytes:
    payload = corpus_json("artifact_created_chat_translation_usage")
    usage = payload["room_artifact"]["metadata"]["character_count_usage"]
    usage["total_characters_estimated_cost"] = float(cost)
    return changed_body(
        payload,
        id="late-artifact-delivery",
        created_at=str(created_at),
        room_artifact__artifact_id="late-artifact",
    )


def test_issued_invoices_never_change_and_late_usage_is_corrected_next_month(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    client = app.test_client()
    _deliver_corpus(client)
    number = f"EV-{YEAR}-0001"

    issued = _invoke(app, "invoice", "issue", "--month", "2025-11")
    assert issued.stdout == f"acme: issued {number}, total 36.98 USD.\n"
    before_json = _invoke(app, "invoice", "show", number, "--format", "json").stdout
    pdf_before = tmp_path / "before.pdf"
    _invoke(app, "invoice", "show", number, "--format", "pdf", "-o", str(pdf_before))
    assert json.loads(before_json)["status"] == "issued"

    # Issuing the month again changes nothing and takes no number.
    again = _invoke(app, "invoice", "issue", "--month", "2025-11")
    assert again.stdout == f"acme: 2025-11 is issued already as {number}; nothing changed.\n"

    # A late usage artifact for November (0.40 reported: 0.3646 + 0.40 = 0.7646, times 1.25
    # = 0.95575, so 0.96 where 0.46 was billed).
    late = int(datetime(2025, 11, 28, 12, tzinfo=UTC).timestamp())
    assert deliver(client, _late_artifact("0.40", late)).status == 200

    after_json = _invoke(app, "invoice", "show", number, "--format", "json").stdout
    assert after_json == before_json
    pdf_after = tmp_path / "after.pdf"
    _invoke(app, "invoice", "show", number, "--format", "pdf", "-o", str(pdf_after))
    assert pdf_after.read_bytes() == pdf_before.read_bytes()
    with runtime.of(app).database().connect() as conn:
        stored_pdf = conn.exec_driver_sql("SELECT pdf FROM invoices").scalar_one()
    assert bytes(stored_pdf) == pdf_before.read_bytes()

    # The November draft now says more, but the next month's draft carries the difference.
    assert _draft(app, "acme", "2025-11")["total"] != "36.98"
    december = _draft(app, "acme", "2025-12")
    [adjustment] = [line for line in december["lines"] if line["kind"] == "adjustment"]
    assert adjustment["corrects"] == number
    assert adjustment["description"].startswith(
        f"Correction to {number} (November 2025): AI usage: chat translation"
    )
    assert (adjustment["quantity"], adjustment["unit_price"], adjustment["amount"]) == (
        "0.4",
        "1.25",
        "0.50",
    )
    net = Decimal("29.00") + Decimal("0.50")
    assert (december["net"], december["tax"], december["total"]) == (
        str(net),
        str(cents(net * Decimal("0.2"))),
        str(net + cents(net * Decimal("0.2"))),
    )

    # Once December is issued with it, January carries no correction; voiding December
    # brings it back, and December's number is never used again.
    _invoke(app, "invoice", "issue", "--month", "2025-12")
    second = f"EV-{YEAR}-0002"
    assert (
        json.loads(_invoke(app, "invoice", "show", second, "--format", "json").stdout)["total"]
        == "35.40"
    )
    assert [line["kind"] for line in _draft(app, "acme", "2026-01")["lines"]] == [
        "monthly_fee", "minutes", "attendee_minutes",
    ]  # fmt: skip
    voided = _invoke(app, "invoice", "void", second, "--reason", "wrong  address")
    assert voided.stdout.startswith(f"Voided {second} (acme, 2025-12).")
    shown = json.loads(_invoke(app, "invoice", "show", second, "--format", "json").stdout)
    assert (shown["status"], shown["void_reason"]) == ("void", "wrong address")
    assert [
        line["amount"]
        for line in _draft(app, "acme", "2026-01")["lines"]
        if line["kind"] == "adjustment"
    ] == ["0.50"]
    reissued = _invoke(app, "invoice", "issue", "--month", "2025-12").stdout
    assert reissued.startswith(f"acme: issued EV-{YEAR}-0003, ")
    listed = json.loads(_invoke(app, "invoice", "list", "--format", "json").stdout)
    assert [(i["number"], i["month"], i["status"]) for i in listed] == [
        (number, "2025-11", "issued"),
        (second, "2025-12", "void"),
        (f"EV-{YEAR}-0003", "2025-12", "issued"),
    ]


def test_an_invoice_that_a_later_one_corrects_is_voided_after_it(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    client = app.test_client()
    _deliver_corpus(client)
    first, second = f"EV-{YEAR}-0001", f"EV-{YEAR}-0002"
    _invoke(app, "invoice", "issue", "--month", "2025-11")
    late = int(datetime(2025, 11, 28, 12, tzinfo=UTC).timestamp())
    assert deliver(client, _late_artifact("0.40", late)).status == 200
    _invoke(app, "invoice", "issue", "--month", "2025-12")  # +0.50 to November, on December

    # Voided alone, November would be issued again with the late usage in it, while
    # December still charges that usage as a correction: the customer would pay it twice.
    refused = app.test_cli_runner().invoke(args=["invoice", "void", first, "--reason", "x"])
    assert refused.exit_code == 1, refused.output
    assert f"{second} (issued) corrects {first}; void {second} first" in refused.output
    assert (
        json.loads(_invoke(app, "invoice", "show", first, "--format", "json").stdout)["status"]
        == "issued"
    )

    # Voided in that order and issued again, the late usage is charged once.
    _invoke(app, "invoice", "void", second, "--reason", "redo")
    _invoke(app, "invoice", "void", first, "--reason", "redo")
    _invoke(app, "invoice", "issue", "--month", "2025-11")
    _invoke(app, "invoice", "issue", "--month", "2025-12")
    charged = Decimal(0)
    for listed in json.loads(_invoke(app, "invoice", "list", "--format", "json").stdout):
        if listed["status"] != "issued":
            continue
        shown = json.loads(
            _invoke(app, "invoice", "show", listed["number"], "--format", "json").stdout
        )
        charged += sum(
            Decimal(line["amount"])
            for line in shown["lines"]
            if line["key"] == "ai_usage:CHAT_TRANSLATION_USAGE"
        )
    assert charged == cents((Decimal("0.3646") + Decimal("0.40")) * Decimal("1.25"))  # 0.96


def test_the_pdf_holds_the_number_the_lines_and_the_total(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    _deliver_corpus(app.test_client())
    _invoke(app, "invoice", "issue", "--month", "2025-11", "--customer", "acme")
    out = tmp_path / "invoice.pdf"
    _invoke(app, "invoice", "show", f"EV-{YEAR}-0001", "--format", "pdf", "-o", str(out))
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    text = " ".join(_pdf_text(data).split())
    for expected in (
        f"EV-{YEAR}-0001",
        "Example Video Ltd",
        "ACME Corp",
        "2025-11-01 to 2025-11-30",
        "Standard plan, November 2025",
        "Attendee minutes",
        "AI usage: chat translation",
        "$1.24",
        "$0.46",
        "Net $30.82",
        "$6.16",
        "Total USD $36.98",
        "Page 1 of 1",
    ):
        assert expected in text, (expected, text)

    # A draft's PDF says it is a draft.
    draft_pdf = tmp_path / "draft.pdf"
    _draft_pdf(app, draft_pdf)
    assert "DRAFT: not issued" in _pdf_text(draft_pdf.read_bytes())


def test_long_invoices_repeat_the_table_header_on_every_page(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    client = app.test_client()
    _deliver_corpus(client)
    # Forty more usage types (an unknown artifact type is still usage) make many lines.
    payload = corpus_json("artifact_created_chat_translation_usage")
    for n in range(40):
        body = changed_body(
            payload, id=f"extra-{n}", room_artifact__artifact_id=f"extra-{n}",
            room_artifact__type=f"CUSTOM_TYPE_{n:02d}_USAGE",
        )  # fmt: skip
        assert deliver(client, body).status == 200
    out = tmp_path / "long.pdf"
    _draft_pdf(app, out)
    pages = pypdf.PdfReader(io.BytesIO(out.read_bytes())).pages
    assert len(pages) >= 2
    for n, page in enumerate(pages, 1):
        text = page.extract_text()
        assert "Description" in text and "Unit price" in text
        assert f"Page {n} of {len(pages)}" in text


def test_an_operator_template(make_app, tmp_path):
    template = tmp_path / "mine.html"
    template.write_text(
        "<html><body><h1>Rechnung {{ invoice.number or 'Entwurf' }}</h1>"
        "{% for line in invoice.lines %}<p>{{ line.description }}: "
        "{{ money(line.amount) }}</p>{% endfor %}"
        "<p>Summe {{ money(invoice.total) }} {{ customer.name }}</p></body></html>"
    )
    app = make_app(billing_file=str(billing_file(tmp_path)), invoice_template=str(template))
    _deliver_corpus(app.test_client())
    out = tmp_path / "mine.pdf"
    _draft_pdf(app, out)
    text = _pdf_text(out.read_bytes())
    assert "Rechnung Entwurf" in text and "Summe $36.98 ACME Corp" in text


def test_mistakes_on_the_command_line(make_app, app, tmp_path):
    # Without a billing file, drafting and issuing say how to give one (the stored invoices
    # can still be listed and shown).
    for args in (
        ["draft", "--customer", "acme", "--month", "2025-11"],
        ["issue", "--month", "2025-11"],
    ):
        result = app.test_cli_runner().invoke(args=["invoice", *args])
        assert result.exit_code == 1 and "set PNM_BILLING_FILE" in result.output
    assert _invoke(app, "invoice", "list").output.startswith("No invoices issued yet")
    billing = _billing_app(make_app, tmp_path)
    runner = billing.test_cli_runner()
    draft = ["invoice", "draft", "--customer"]
    cases = [
        (
            [*draft, "nobody", "--month", "2025-11"],
            "'nobody' is not a customer of the billing file; use one of: acme.",
        ),
        (
            [*draft, "acme", "--month", "2025-13"],
            "a month is written like 2026-11, not '2025-13'.",
        ),
        (["invoice", "issue", "--month", "November"], "a month is written like 2026-11"),
        (["invoice", "issue", "--month", "9999-12"], "not '9999-12'"),
        (
            ["invoice", "show", "EV-1999-0001"],
            "there is no invoice 'EV-1999-0001'; 'flask --app app invoice list' shows them.",
        ),
        (["invoice", "void", "EV-1999-0001", "--reason", "x"], "there is no invoice"),
        ([*draft, "acme", "--month", "2025-11", "--format", "xml"], "'xml' is not one of"),
    ]
    for args, sentence in cases:
        result = runner.invoke(args=args)
        assert result.exit_code != 0, args
        assert sentence in result.output, (args, result.output)
        assert "Traceback" not in result.output
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for args in (
        [*draft, "acme", "--month", "2025-11", "-o", str(tmp_path / "no" / "such" / "x.csv")],
        ["invoice", "issue", "--month", "2025-11", "--pdf-dir", str(a_file / "pdfs")],
    ):
        result = runner.invoke(args=args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert "cannot write" in result.output and "No such file" not in str(result.exception)
        assert "Traceback" not in result.output
    assert json.loads(_invoke(billing, "invoice", "list", "--format", "json").stdout) == []
    number = f"EV-{YEAR}-0001"
    taken = tmp_path / "pdfs" / f"{number}.pdf"
    taken.mkdir(parents=True)  # the PDF's name is taken: issued all the same, and said so
    issued = runner.invoke(
        args=["invoice", "issue", "--month", "2025-11", "--pdf-dir", str(taken.parent)]
    )
    assert issued.exit_code == 1 and "Traceback" not in issued.output
    assert f"acme: issued {number}, total 34.80 USD; cannot write {taken}" in issued.output
    assert f"invoice show {number} --format pdf -o FILE" in issued.output
    cannot = runner.invoke(
        args=["invoice", "show", number, "--format", "pdf", "-o", str(a_file / "x.pdf")]
    )
    assert cannot.exit_code == 1 and f"cannot write {a_file / 'x.pdf'}" in cannot.output
    no_reason = runner.invoke(args=["invoice", "void", number, "--reason", "  "])
    assert no_reason.exit_code == 1 and "give a reason" in no_reason.output
    _invoke(billing, "invoice", "void", number, "--reason", "sent twice")
    twice = runner.invoke(args=["invoice", "void", number, "--reason", "again"])
    assert (
        twice.exit_code == 1 and f"invoice {number} is void already (sent twice)." in twice.output
    )


CUSTOMERS = 6


def _many_customers(tmp_path: Path) -> Path:
    text = EXAMPLE_BILLING
    for n in range(CUSTOMERS - 1):
        text += f'\n[customers.c{n}]\nname = "C{n}"\nplan = "standard"\nrooms = ["room-{n}-*"]\n'
    path = tmp_path / "many.toml"
    path.write_text(text)
    return path


def _issue_process(database_url: str, billing: Path) -> subprocess.Popen[str]:
    environment = {
        "PATH": "/usr/bin:/bin",
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": SECRET,
        "PNM_DATABASE_URL": database_url,
        "PNM_BILLING_FILE": str(billing),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "invoice", "issue", "--month", "2025-11"],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_numbers_are_gapless_across_customers_and_two_issuers_at_once(
    make_app, tmp_path, database_url
):
    billing = _many_customers(tmp_path)
    app = make_app(billing_file=str(billing))
    _deliver_corpus(app.test_client())
    runtime.of(app).database()  # the schema, before two processes race for it

    first, second = _issue_process(database_url, billing), _issue_process(database_url, billing)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    lines = [line for out, _ in outputs for line in out.splitlines()]
    issued = sorted(re.findall(rf"issued (EV-{YEAR}-\d{{4}})", "\n".join(lines)))
    already = [line for line in lines if "issued already" in line]
    assert len(issued) == CUSTOMERS and len(already) == CUSTOMERS
    assert issued == [f"EV-{YEAR}-{n:04d}" for n in range(1, CUSTOMERS + 1)]

    listed = json.loads(_invoke(app, "invoice", "list", "--format", "json").stdout)
    assert sorted(i["number"] for i in listed) == issued
    assert sorted(i["customer"] for i in listed) == sorted(
        ["acme", *(f"c{n}" for n in range(CUSTOMERS - 1))]
    )
    with runtime.of(app).database().connect() as conn:
        assert conn.exec_driver_sql("SELECT last FROM invoice_numbers").scalar_one() == CUSTOMERS


def test_a_template_reads_files_of_its_own_folder_only(make_app, tmp_path):
    folder = tmp_path / "template"
    folder.mkdir()
    (folder / "terms.txt").write_text("Our own terms, from the template's folder.")
    outside = tmp_path / "webhooks.env"
    outside.write_text("PNM_API_SECRET=not-for-an-invoice")
    template = folder / "mine.html"
    template.write_text(
        "<html><body><p>Invoice {{ invoice.total }}</p>"
        '<link rel="attachment" href="terms.txt">'
        f'<link rel="attachment" href="file://{outside}">'
        '<img src="http://127.0.0.1:9/logo.png">'
        "</body></html>"
    )
    app = make_app(billing_file=str(billing_file(tmp_path)), invoice_template=str(template))
    _deliver_corpus(app.test_client())
    out = tmp_path / "mine.pdf"
    _draft_pdf(app, out)
    attached = pypdf.PdfReader(io.BytesIO(out.read_bytes())).attachments
    assert list(attached) == ["terms.txt"]  # not the file outside the folder
    assert attached["terms.txt"] == [b"Our own terms, from the template's folder."]


def test_no_correction_crosses_currencies(make_app, tmp_path):
    app = _billing_app(make_app, tmp_path)
    client = app.test_client()
    _deliver_corpus(client)
    _invoke(app, "invoice", "issue", "--month", "2025-11")
    late = int(datetime(2025, 11, 28, 12, tzinfo=UTC).timestamp())
    assert deliver(client, _late_artifact("0.40", late)).status == 200
    in_euros = tmp_path / "eur.toml"
    in_euros.write_text(EXAMPLE_BILLING.replace('currency = "USD"', 'currency = "EUR"'))
    euro_app = make_app(billing_file=str(in_euros))

    december = _draft(euro_app, "acme", "2025-12")
    assert [line["kind"] for line in december["lines"]] == [
        "monthly_fee", "minutes", "attendee_minutes",
    ]  # fmt: skip
    assert december["notes"] == [
        f"EV-{YEAR}-0001 was issued in USD, and this invoice is in EUR: corrections to it are "
        "not added here; if its month changed since, correct it with a credit or debit note "
        "of its own."
    ]
    table = _invoke(euro_app, "invoice", "draft", "--customer", "acme", "--month", "2025-12")
    assert f"note: EV-{YEAR}-0001 was issued in USD" in table.stdout
    # In the same currency, the correction is there and no note.
    same = _draft(app, "acme", "2025-12")
    assert "notes" not in same and same["lines"][-1]["kind"] == "adjustment"
