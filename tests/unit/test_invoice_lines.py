"""Invoice lines from figures: half-up rounding to each currency's minor unit, per line, and
totals summed from the rounded lines."""

from __future__ import annotations

from decimal import Decimal

from plugnmeet_webhooks.billing.billing_file import Customer, Plan
from plugnmeet_webhooks.billing.invoices import ArtifactUsage, Figures, Invoice, Month, usage_lines

NOVEMBER = Month(2026, 11)


def _invoice(plan: Plan, figures: Figures) -> Invoice:
    customer = Customer(key="c", name="C", plan=plan, rooms=("*",))
    return Invoice(
        customer=customer,
        month=NOVEMBER,
        plan=plan,
        lines=tuple(usage_lines(figures, plan, NOVEMBER)),
    )


def _figures(minutes: int = 0, attendee: int = 0, cost: str | None = None) -> Figures:
    usage = {}
    if cost is not None:
        usage["MEETING_SUMMARY_USAGE"] = ArtifactUsage(
            artifacts=1, quantities=(("tokens", 10),), cost=Decimal(cost), priced_artifacts=1
        )
    return Figures(billable_minutes=minutes, attendee_minutes=attendee, sessions=1, usage=usage)


def test_half_up_per_line_then_summed():
    plan = Plan(
        key="p", currency="USD", per_billable_minute=Decimal("0.0125"),
        per_attendee_minute=Decimal("0.0125"), tax_rate=Decimal("0.2"),
    )  # fmt: skip
    # 10 minutes at 0.0125 is 0.125: half-up gives 0.13 (banker's rounding would give 0.12).
    invoice = _invoice(plan, _figures(minutes=10, attendee=10))
    amounts = [line.amount for line in invoice.lines]
    assert amounts == [Decimal("0.00"), Decimal("0.13"), Decimal("0.13")]
    # Net is the sum of the rounded lines (0.26), not the rounded sum of the exact ones (0.25).
    assert (invoice.net, invoice.tax, invoice.total) == (
        Decimal("0.26"), Decimal("0.05"), Decimal("0.31"),
    )  # fmt: skip


def test_included_minutes_and_the_ai_multiplier():
    plan = Plan(
        key="p", currency="EUR", monthly_fee=Decimal("10"), included_minutes=100,
        per_billable_minute=Decimal("0.05"), ai_cost_multiplier=Decimal("1.5"),
    )  # fmt: skip
    lines = _invoice(plan, _figures(minutes=130, cost="0.333333")).lines
    assert [(line.kind, line.quantity, line.amount) for line in lines] == [
        ("monthly_fee", Decimal(1), Decimal("10.00")),
        ("minutes", Decimal(30), Decimal("1.50")),
        ("attendee_minutes", Decimal(0), Decimal("0.00")),
        ("ai_usage", Decimal("0.333333"), Decimal("0.50")),  # 0.4999995 rounds to 0.50
    ]
    assert (
        lines[1].description == "Billable minutes beyond the 100 included (130 used in 1 session)"
    )
    assert lines[3].description.startswith("AI usage: meeting summary (1 artifact, 10 tokens)")


def test_currencies_without_and_with_three_decimals():
    yen = Plan(key="p", currency="JPY", per_attendee_minute=Decimal("1.5"), tax_rate=Decimal("0.1"))
    invoice = _invoice(yen, _figures(attendee=3))  # 4.5 yen rounds half-up to 5
    assert [line.amount for line in invoice.lines] == [Decimal(0), Decimal(0), Decimal(5)]
    assert (str(invoice.net), str(invoice.tax), str(invoice.total)) == ("5", "1", "6")  # 0.5 -> 1
    dinar = Plan(key="p", currency="KWD", per_attendee_minute=Decimal("0.0015"))
    assert _invoice(dinar, _figures(attendee=1)).lines[2].amount == Decimal("0.002")


def test_months():
    assert str(Month.parse("2026-02")) == "2026-02" and Month.parse("2026-02").last_day.day == 28
    assert Month(2026, 12).next() == Month(2027, 1)
    for bad in ("2026-13", "2026-1", "26-01", "1969-12", "November", "9999-12", "２０２６-１１"):
        try:
            Month.parse(bad)
        except ValueError as exc:
            assert "a month is written like 2026-11" in str(exc)
        else:
            raise AssertionError(bad)


def test_the_last_month_there_is_has_bounds():
    customer = Customer(key="c", name="C", plan=Plan(key="p", currency="USD"), rooms=("*",))
    last = Month.parse("9998-12")
    start, end = last.bounds(customer)
    assert end - start == 31 * 86400
