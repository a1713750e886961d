"""Invoices: a customer's month of the ledger, priced by their plan.

The figures come from the same reports as ``flask report`` (the rooms and usage reports
over the customer's month, in the customer's time zone), so an invoice, the reports and the
dashboard agree. Each line is rounded half-up to the currency's minor unit; net is the sum
of the rounded lines, tax is net times the rate, rounded the same way, and total is net
plus tax.

An issued invoice never changes. Usage that reaches the ledger later for a month already
issued (a late webhook, a reconciliation pass, a replay) becomes an ``adjustment`` line on
the customer's next draft, naming the invoice it corrects: the month is priced again with
the plan it was issued with, and the difference from what was billed (the invoice and the
adjustments already issued against it) is what the line charges or credits.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Connection

from plugnmeet_webhooks.billing.billing_file import Customer, Plan
from plugnmeet_webhooks.ledger.periods import Filters
from plugnmeet_webhooks.ledger.reports import rooms_report, usage_report
from plugnmeet_webhooks.text import counted

MONTHLY_FEE = "monthly_fee"
MINUTES = "minutes"
ATTENDEE_MINUTES = "attendee_minutes"
AI_USAGE = "ai_usage"
ADJUSTMENT = "adjustment"
LINE_KINDS = (MONTHLY_FEE, MINUTES, ATTENDEE_MINUTES, AI_USAGE, ADJUSTMENT)
DRAFT, ISSUED, VOID = "draft", "issued", "void"


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, such as 2026-11."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """Read ``YYYY-MM``, or say what is wrong."""
        found = re.fullmatch(r"([0-9]{4})-([0-9]{2})", text.strip())
        # 9999-12 has no end: its following midnight is in a year datetime cannot hold.
        if not found or not 1 <= int(found[2]) <= 12 or not 1970 <= int(found[1]) <= 9998:
            raise ValueError(f"a month is written like 2026-11, not {text[:20]!r}")
        return cls(int(found[1]), int(found[2]))

    @classmethod
    def of(cls, day: date) -> Month:
        """The month a day is in."""
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    @property
    def title(self) -> str:
        """The month as an invoice names it: November 2026."""
        return f"{calendar.month_name[self.month]} {self.year}"

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def bounds(self, customer: Customer) -> tuple[int, int]:
        """[start, end) in unix seconds: midnight to midnight in the customer's time zone."""
        zone = customer.zone
        start = datetime(self.year, self.month, 1, tzinfo=zone)
        following = self.next()
        end = datetime(following.year, following.month, 1, tzinfo=zone)
        return int(start.timestamp()), int(end.timestamp())


@dataclass(frozen=True, slots=True)
class Line:
    """One line of an invoice. ``key`` says which figure it prices (for corrections)."""

    kind: str
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    key: str = ""
    corrects: str | None = None  # an adjustment: the number of the invoice it corrects

    def as_dict(self) -> dict[str, Any]:
        """The line as the invoice's JSON has it: numbers as decimal strings."""
        shown: dict[str, Any] = {
            "kind": self.kind,
            "description": self.description,
            "quantity": str(self.quantity),
            "unit": self.unit,
            "unit_price": None if self.unit_price is None else str(self.unit_price),
            "amount": str(self.amount),
        }
        if self.corrects is not None:
            shown["corrects"] = self.corrects
        shown["key"] = self.key
        return shown

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Line:
        """Read a line back from an issued invoice's JSON."""
        price = data.get("unit_price")
        return cls(
            kind=data["kind"],
            description=data["description"],
            quantity=Decimal(data["quantity"]),
            unit=data["unit"],
            unit_price=None if price is None else Decimal(price),
            amount=Decimal(data["amount"]),
            key=data.get("key", ""),
            corrects=data.get("corrects"),
        )


@dataclass(frozen=True, slots=True)
class Invoice:
    """A customer's invoice for a month: a draft, or as it was issued."""

    customer: Customer
    month: Month
    plan: Plan
    lines: tuple[Line, ...]
    status: str = DRAFT
    number: str | None = None
    issued_at: str | None = None  # ISO 8601 UTC
    notes: tuple[str, ...] = field(default=())

    @property
    def currency(self) -> str:
        return self.plan.currency

    @property
    def net(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0)).quantize(self.plan.minor_unit)

    @property
    def tax(self) -> Decimal:
        return round_money(self.net * self.plan.tax_rate, self.plan)

    @property
    def total(self) -> Decimal:
        return self.net + self.tax

    def as_dict(self) -> dict[str, Any]:
        """The invoice as JSON: amounts as decimal strings, the period in the customer's zone."""
        return {
            "number": self.number,
            "customer": self.customer.key,
            "customer_name": self.customer.name,
            "period": {
                "start": self.month.first_day.isoformat(),
                "end": self.month.last_day.isoformat(),
                "timezone": self.customer.timezone,
            },
            "currency": self.currency,
            "status": self.status,
            "issued_at": self.issued_at,
            "plan": self.plan.key,
            "tax_rate": str(self.plan.tax_rate),
            "lines": [line.as_dict() for line in self.lines],
            "net": str(self.net),
            "tax": str(self.tax),
            "total": str(self.total),
        } | ({"notes": list(self.notes)} if self.notes else {})


def plain(value: Decimal) -> Decimal:
    """A quantity without trailing zeros or an exponent: 0.4000 is 0.4, 1.5E+3 is 1500."""
    return Decimal(format(value.normalize(), "f"))


def round_money(amount: Decimal, plan: Plan) -> Decimal:
    """Round to the currency's minor unit, half up (0.125 USD is 0.13)."""
    return amount.quantize(plan.minor_unit, rounding=ROUND_HALF_UP)


def _number(value: Decimal | int) -> str:
    """Print a quantity for a description: 1,520 or 0.012345."""
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{int(value):,}"
    return f"{value.normalize():,f}"


@dataclass(frozen=True, slots=True)
class ArtifactUsage:
    """A customer's usage of one AI artifact type in a period."""

    artifacts: int = 0
    quantities: tuple[tuple[str, int], ...] = ()  # by unit
    cost: Decimal = Decimal(0)
    priced_artifacts: int = 0
    unpriced_artifacts: int = 0


@dataclass(frozen=True, slots=True)
class Figures:
    """What the ledger holds for a customer's month, read through the reports."""

    billable_minutes: int
    attendee_minutes: int
    sessions: int
    usage: Mapping[str, ArtifactUsage]


class Ledger:
    """The reports over one period, read once and shared by every customer they cover."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._reports: dict[tuple[int, int, str | None], tuple[Any, Any]] = {}

    def figures(self, customer: Customer, month: Month) -> Figures:
        """The customer's figures for a month, in their time zone."""
        span = month.bounds(customer)
        key = (*span, customer.tenant)
        if key not in self._reports:
            filters = Filters(span=span, tenant=customer.tenant)
            self._reports[key] = (
                rooms_report(self.conn, filters),
                usage_report(self.conn, filters),
            )
        rooms, usage = self._reports[key]
        owned = [r for r in rooms.rows if customer.owns(r.tenant, r.room_id)]
        by_type: dict[str, dict[str, Any]] = {}
        for row in usage.rows:
            if not customer.owns(row.tenant, row.room_id):
                continue
            sums = by_type.setdefault(
                row.artifact_type,
                {"artifacts": 0, "units": {}, "cost": Decimal(0), "priced": 0, "unpriced": 0},
            )
            sums["artifacts"] += row.artifacts
            sums["units"][row.unit] = sums["units"].get(row.unit, 0) + row.quantity
            if row.estimated_cost is not None:
                sums["cost"] += Decimal(str(row.estimated_cost))
            sums["priced"] += row.artifacts - row.artifacts_without_cost
            sums["unpriced"] += row.artifacts_without_cost
        return Figures(
            billable_minutes=sum(r.billable_minutes for r in owned),
            attendee_minutes=sum(r.attendee_minutes for r in owned),
            sessions=sum(r.sessions for r in owned),
            usage={
                kind: ArtifactUsage(
                    artifacts=s["artifacts"],
                    quantities=tuple(sorted(s["units"].items())),
                    cost=s["cost"],
                    priced_artifacts=s["priced"],
                    unpriced_artifacts=s["unpriced"],
                )
                for kind, s in sorted(by_type.items())
            },
        )


def _type_name(artifact_type: str) -> str:
    """MEETING_SUMMARY_USAGE as an invoice says it: meeting summary."""
    words = artifact_type.lower().removesuffix("_usage").split("_")
    return " ".join("AI" if word == "ai" else word for word in words)


def usage_lines(figures: Figures, plan: Plan, month: Month) -> list[Line]:
    """The lines a month's figures make under a plan (every line but adjustments)."""
    beyond = max(0, figures.billable_minutes - plan.included_minutes)
    lines = [
        Line(
            MONTHLY_FEE,
            f"{plan.title} plan, {month.title}",
            Decimal(1),
            "month",
            plan.monthly_fee,
            round_money(plan.monthly_fee, plan),
            key=MONTHLY_FEE,
        ),
        Line(
            MINUTES,
            f"Billable minutes beyond the {plan.included_minutes:,} included "
            f"({figures.billable_minutes:,} used in {counted(figures.sessions, 'session')})",
            Decimal(beyond),
            "minute",
            plan.per_billable_minute,
            round_money(beyond * plan.per_billable_minute, plan),
            key=MINUTES,
        ),
        Line(
            ATTENDEE_MINUTES,
            "Attendee minutes",
            Decimal(figures.attendee_minutes),
            "minute",
            plan.per_attendee_minute,
            round_money(figures.attendee_minutes * plan.per_attendee_minute, plan),
            key=ATTENDEE_MINUTES,
        ),
    ]
    for artifact_type, used in figures.usage.items():
        amounts = ", ".join(f"{_number(q)} {unit}" for unit, q in used.quantities)
        what = f"{_type_name(artifact_type)} ({counted(used.artifacts, 'artifact')}, {amounts})"
        if used.priced_artifacts:
            lines.append(
                Line(
                    AI_USAGE,
                    f"AI usage: {what}; reported cost × {plan.ai_cost_multiplier}",
                    plain(used.cost),
                    f"{plan.currency} reported",
                    plan.ai_cost_multiplier,
                    round_money(used.cost * plan.ai_cost_multiplier, plan),
                    key=f"{AI_USAGE}:{artifact_type}",
                )
            )
        if used.unpriced_artifacts:
            lines.append(
                Line(
                    AI_USAGE,
                    f"AI usage without a reported cost: {_type_name(artifact_type)} "
                    "(listed, not charged)",
                    Decimal(used.unpriced_artifacts),
                    "artifact",
                    None,
                    round_money(Decimal(0), plan),
                    key=f"{AI_USAGE}-unpriced:{artifact_type}",
                )
            )
    return lines


@dataclass(frozen=True, slots=True)
class Billed:
    """An issued invoice as corrections need it: its month, plan, lines, and number."""

    number: str
    month: Month
    plan: Plan
    lines: tuple[Line, ...]


def adjustments(
    ledger: Ledger, customer: Customer, month: Month, issued: Sequence[Billed]
) -> tuple[list[Line], list[str]]:
    """The corrections a draft for ``month`` carries: for each invoice issued for an earlier
    month, what the ledger now says of that month less what was billed for it. An invoice
    issued in another currency than the customer's plan has now is not corrected here: a
    note says so, for a credit or debit note by hand."""
    corrected: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for billed in issued:
        for line in billed.lines:
            if line.corrects is not None:
                q, a = corrected.get((line.corrects, line.key), (Decimal(0), Decimal(0)))
                corrected[(line.corrects, line.key)] = (q + line.quantity, a + line.amount)
    made: list[Line] = []
    notes: list[str] = []
    for billed in sorted(issued, key=lambda b: (b.month, b.number)):
        if billed.month >= month:
            continue
        if billed.plan.currency != customer.plan.currency:
            notes.append(
                f"{billed.number} was issued in {billed.plan.currency}, and this invoice is in "
                f"{customer.plan.currency}: corrections to it are not added here; if its month "
                "changed since, correct it with a credit or debit note of its own."
            )
            continue
        now = {
            line.key: line
            for line in usage_lines(
                ledger.figures(customer, billed.month), billed.plan, billed.month
            )
        }
        then = {line.key: line for line in billed.lines if line.corrects is None}
        for key in [*then, *(k for k in now if k not in then)]:
            new, old = now.get(key), then.get(key)
            q0, a0 = corrected.get((billed.number, key), (Decimal(0), Decimal(0)))
            zero = Decimal(0)
            quantity = (new.quantity if new else zero) - (old.quantity if old else zero) - q0
            amount = (new.amount if new else zero) - (old.amount if old else zero) - a0
            if amount == 0:
                continue
            like = new or old
            assert like is not None
            made.append(
                Line(
                    ADJUSTMENT,
                    f"Correction to {billed.number} ({billed.month.title}): {like.description}",
                    plain(quantity),
                    like.unit,
                    like.unit_price,
                    amount,
                    key=key,
                    corrects=billed.number,
                )
            )
    return made, notes


def draft(
    ledger: Ledger, customer: Customer, month: Month, issued: Iterable[Billed] = ()
) -> Invoice:
    """Compute a customer's invoice for a month; nothing is stored."""
    plan = customer.plan
    lines = usage_lines(ledger.figures(customer, month), plan, month)
    corrections, notes = adjustments(ledger, customer, month, list(issued))
    return Invoice(
        customer=customer,
        month=month,
        plan=plan,
        lines=tuple(lines + corrections),
        notes=tuple(notes),
    )
