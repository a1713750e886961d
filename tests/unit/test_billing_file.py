"""Billing files: the example works as written; every kind of mistake is one clear sentence
and stops the service from starting."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from decimal import Decimal

import pytest

from app import create_app
from config import ConfigError, Settings
from plugnmeet_webhooks.billing.billing_file import globs_overlap, load_billing, parse_billing
from plugnmeet_webhooks.billing.invoices import ArtifactUsage, Figures, Invoice, Month, usage_lines
from tests.support.helpers import KEY, ROOT, SECRET

EXAMPLE = ROOT / "samples" / "billing.toml"
ISSUER = '[issuer]\nname = "Example Video Ltd"\n'
PLAN = '[plans.standard]\ncurrency = "USD"\nmonthly_fee = "29.00"\n'
ACME = '[customers.acme]\nname = "ACME"\nplan = "standard"\nrooms = ["weekly-*"]\n'


def test_the_example_file_works_as_written():
    billing = load_billing(str(EXAMPLE))
    assert billing is not None
    assert billing.issuer.name == "Example Video Ltd"
    assert billing.issuer.address == "1 Example Street\nLondon"
    assert billing.issuer.invoice_prefix == "EV-"
    plan = billing.plans["standard"]
    assert (plan.currency, plan.monthly_fee, plan.included_minutes) == (
        "USD",
        Decimal("29.00"),
        100,
    )
    assert plan.per_billable_minute == Decimal("0.04")
    assert plan.per_attendee_minute == Decimal("0.01")
    assert plan.ai_cost_multiplier == Decimal("1.25")
    assert plan.tax_rate == Decimal("0.20")
    assert plan.minor_unit == Decimal("0.01")
    acme = billing.customers["acme"]
    assert (acme.name, acme.plan, acme.timezone, acme.stripe_customer) == (
        "ACME Corp",
        plan,
        "Europe/London",
        "cus_123",
    )
    assert acme.owns("plugnmeet", "weekly-standup") and acme.owns("any", "board-2026")
    assert not acme.owns("plugnmeet", "daily-weekly-x") and not acme.owns("plugnmeet", None)
    assert billing.customer_of("plugnmeet", "board-1") is acme
    assert billing.customer_of("plugnmeet", "other") is None


def test_prices_are_plain_decimals_whatever_way_they_are_written():
    text = (
        ISSUER + '[plans.standard]\ncurrency = "USD"\nmonthly_fee = "-0"\n'
        'per_attendee_minute = "1E+1"\nai_cost_multiplier = "-0.00"\ntax_rate = "-0"\n' + ACME
    )
    plan = parse_billing(text).plans["standard"]
    assert [
        str(price)
        for price in (
            plan.monthly_fee, plan.per_attendee_minute, plan.ai_cost_multiplier, plan.tax_rate,
        )
    ] == ["0", "10", "0.00", "0"]  # fmt: skip
    figures = Figures(
        billable_minutes=0,
        attendee_minutes=2,
        sessions=1,
        usage={"MEETING_SUMMARY_USAGE": ArtifactUsage(1, (("tokens", 1),), Decimal("0.5"), 1)},
    )
    month = Month(2026, 1)
    customer = parse_billing(text).customers["acme"]
    invoice = Invoice(customer, month, plan, tuple(usage_lines(figures, plan, month)))
    shown = invoice.as_dict()
    assert [(line["unit_price"], line["amount"]) for line in shown["lines"]] == [
        ("0", "0.00"), ("0", "0.00"), ("10", "20.00"), ("0.00", "0.00"),
    ]  # fmt: skip
    assert (shown["tax_rate"], shown["net"], shown["tax"], shown["total"]) == (
        "0", "20.00", "0.00", "20.00",
    )  # fmt: skip


def test_no_file_means_no_billing():
    assert load_billing(None) is None and load_billing("") is None


def test_a_tenant_narrows_a_customer_and_globs_are_plain_text():
    billing = parse_billing(
        ISSUER
        + PLAN
        + '[customers.a]\nname = "A"\nplan = "standard"\nrooms = ["r[1]?"]\ntenant = "t1"\n'
        + '[customers.b]\nname = "B"\nplan = "standard"\nrooms = ["r[1]?"]\ntenant = "t2"\n'
    )
    a, b = billing.customers["a"], billing.customers["b"]
    assert a.owns("t1", "r[1]x") and not a.owns("t1", "r1x") and not a.owns("t2", "r[1]x")
    assert billing.customer_of("t2", "r[1]z") is b


def test_currencies_have_their_minor_units():
    def unit(code: str) -> Decimal:
        plan_text = f'[plans.p]\ncurrency = "{code}"\n'
        return parse_billing(ISSUER + plan_text + "[customers]\n").plans["p"].minor_unit

    assert (unit("USD"), unit("JPY"), unit("KWD")) == (
        Decimal("0.01"),
        Decimal(1),
        Decimal("0.001"),
    )


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("weekly-*", "weekly-standup", True),
        ("weekly-*", "*-standup", True),
        ("weekly-*", "board-*", False),
        ("a?c", "abc", True),
        ("a?c", "ab", False),
        ("*", "x", True),
        ("a*b*c", "a*c", True),
        ("x*", "*y", True),
        ("abc", "abd", False),
        ("a*", "b*", False),
        ("team-?", "team-??", False),
    ],
)
def test_glob_overlap(a, b, overlap):
    assert globs_overlap(a, b) is overlap
    assert globs_overlap(b, a) is overlap


def test_thousands_of_customers_are_checked_for_overlaps_in_a_moment(monkeypatch):
    from plugnmeet_webhooks.billing import billing_file

    tried: list[tuple[str, str]] = []
    full_test = billing_file.globs_overlap

    def counted(a: str, b: str) -> bool:
        tried.append((a, b))
        return full_test(a, b)

    monkeypatch.setattr(billing_file, "globs_overlap", counted)
    customers = "".join(
        f'[customers.c{n}]\nname = "C{n}"\nplan = "standard"\n'
        f'rooms = ["r{n:05d}-*", "s{n:05d}", "t{n:05d}-?-*-x"]\n'
        for n in range(3000)
    )
    assert len(parse_billing(ISSUER + PLAN + customers).customers) == 3000
    # Only globs whose fixed starts and ends could agree are tried in full: none of these,
    # where every pair of the 9,000 (40 million) took minutes.
    assert tried == []
    clash = '[customers.late]\nname = "L"\nplan = "standard"\nrooms = ["t02999-a*"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_billing(ISSUER + PLAN + customers + clash)
    assert "customers 'c2999' and 'late' could both own a room: 't02999-?-*-x' and" in str(
        caught.value.message
    )


MISTAKES = [
    ("this is = not toml [", ["not valid TOML"]),
    (PLAN + ACME, ["no [issuer] table"]),
    (ISSUER + ACME, ["no [plans] table"]),
    (ISSUER + PLAN, ["no [customers] table"]),
    (ISSUER + PLAN + ACME + "[extra]\n", ["the billing file has the unknown key 'extra'"]),
    ('[issuer]\naddress = "x"\n' + PLAN + ACME, ["issuer has no name", "name = "]),
    (
        '[issuer]\nname = "X"\ninvoice_prefix = "EV 2026 #"\n' + PLAN + ACME,
        ["invoice_prefix must be at most 20 letters"],
    ),
    (ISSUER + '[plans.standard]\nmonthly_fee = "1"\n' + ACME, ["plans.standard has no currency"]),
    (
        ISSUER + '[plans.standard]\ncurrency = "DOLLARS"\n' + ACME,
        ["currency is 'DOLLARS'", "ISO 4217", '"USD"'],
    ),
    (
        ISSUER + '[plans.standard]\ncurrency = "usd"\n' + ACME,
        ["currency is 'usd'", "three capital letters"],
    ),
    (
        ISSUER + PLAN + 'per_billable_minute = "-0.04"\n' + ACME,
        ["per_billable_minute is -0.04, which is negative"],
    ),
    (
        ISSUER + PLAN + "per_attendee_minute = 0.01\n" + ACME,
        ["per_attendee_minute is written as a number with a point", 'per_attendee_minute = "'],
    ),
    (
        ISSUER + PLAN + 'ai_cost_multiplier = "lots"\n' + ACME,
        ["ai_cost_multiplier is 'lots', which is not a number"],
    ),
    (ISSUER + PLAN + 'tax_rate = "20"\n' + ACME, ["tax_rate is 20, more than 1"]),
    (ISSUER + PLAN + 'monthly_fee_x = "1"\n' + ACME, ["plans.standard has the unknown key"]),
    (
        ISSUER + PLAN + 'per_billable_minute = "0.0000001"\n' + ACME,
        ["more than 6 decimals"],
    ),
    (ISSUER + PLAN + "included_minutes = -5\n" + ACME, ["included_minutes must be a whole number"]),
    (
        ISSUER + PLAN + '[customers.acme]\nname = "A"\nplan = "gold"\nrooms = ["x"]\n',
        ["customers.acme: plan 'gold' does not exist", "[plans.gold]", "standard"],
    ),
    (
        ISSUER + PLAN + '[customers.acme]\nname = "A"\nplan = "standard"\n',
        ["customers.acme: rooms must be a list", 'rooms = ["weekly-*"]'],
    ),
    (ISSUER + PLAN + '[customers.acme]\nplan = "standard"\nrooms = ["x"]\n', ["has no name"]),
    (
        ISSUER + PLAN + ACME + 'timezone = "Mars/Olympus"\n',
        ["timezone 'Mars/Olympus' is not a time zone", "Europe/London"],
    ),
    (ISSUER + PLAN + ACME + 'stripe_customer = "cus 1"\n', ["stripe_customer must be a Stripe id"]),
    (
        ISSUER + PLAN + ACME + '[customers.other]\nname = "O"\nplan = "standard"\n'
        'rooms = ["weekly-standup"]\n',
        ["customers 'acme' and 'other' could both own a room", "'weekly-*' and 'weekly-standup'"],
    ),
    (ISSUER + PLAN + ACME + "colour = 1\n", ["customers.acme has the unknown key 'colour'"]),
]


@pytest.mark.parametrize(("text", "words"), MISTAKES, ids=[w[0] for _, w in MISTAKES])
def test_each_mistake_is_one_sentence(text, words):
    with pytest.raises(ConfigError) as caught:
        parse_billing(text)
    message = caught.value.message
    for word in words:
        assert word in message, message
    assert "\n" not in message and message.endswith(".")


def test_a_mistake_stops_the_service_from_starting(tmp_path):
    bad = tmp_path / "billing.toml"
    bad.write_text(ISSUER + PLAN + ACME + 'timezone = "Nowhere/Land"\n')
    settings = Settings(
        api_keys={KEY: SECRET}, database_url=f"sqlite:///{tmp_path}/db", billing_file=str(bad)
    )
    with pytest.raises(ConfigError) as caught:
        create_app(settings)
    assert str(bad) in caught.value.message and "Nowhere/Land" in caught.value.message

    # As an operator meets it: the command ends with the sentence and a failure status.
    environment = {
        "PATH": "/usr/bin:/bin",
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": SECRET,
        "PNM_DATABASE_URL": f"sqlite:///{tmp_path}/db",
        "PNM_BILLING_FILE": str(bad),
    }
    ran = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "invoice", "list"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert "timezone 'Nowhere/Land' is not a time zone" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_an_unreadable_file_or_template_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"PNM_BILLING_FILE names .*cannot be read"):
        load_billing(str(tmp_path / "missing.toml"))
    settings = Settings(
        api_keys={KEY: SECRET},
        database_url=f"sqlite:///{tmp_path}/db",
        billing_file=str(EXAMPLE),
        invoice_template=str(tmp_path / "missing.html"),
    )
    with pytest.raises(ConfigError, match=r"PNM_INVOICE_TEMPLATE names .*cannot be read"):
        create_app(settings)
    broken = tmp_path / "broken.html"
    broken.write_text("<p>{% for x in %}</p>")
    with pytest.raises(ConfigError, match="is not a valid template"):
        create_app(replace(settings, invoice_template=str(broken)))
