"""The billing file (``PNM_BILLING_FILE``): who issues invoices, the plans, the customers.

TOML read with ``tomllib`` and checked whole at start-up, like the rules file: every mistake
stops the service with one sentence that names the table, the key and what to put there.
Money is :class:`~decimal.Decimal` read from strings (or whole numbers), never from floats,
so ``"0.10"`` is exactly a tenth.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import get_currency_precision, list_currencies

from config import ConfigError
from plugnmeet_webhooks.workflows.reader import Reader, load_file

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PREFIX = re.compile(r"[A-Za-z0-9/_.-]{0,20}")
MAX_PRICE = Decimal("1000000000")  # a billion per unit: beyond that, a typo
MAX_DECIMALS = 6  # unit prices are kept to micro-units, like the ledger's costs
MAX_TEXT = 500


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who issues the invoices, and how their numbers look."""

    name: str
    address: str = ""
    invoice_prefix: str = "INV-"
    email: str = ""
    tax_id: str = ""
    payment_terms: str = ""  # a sentence printed on every invoice, e.g. "Due in 30 days"


@dataclass(frozen=True, slots=True)
class Plan:
    """What a plan charges: a monthly fee, minutes beyond those included, AI usage, tax."""

    key: str
    currency: str
    monthly_fee: Decimal = Decimal(0)
    included_minutes: int = 0
    per_billable_minute: Decimal = Decimal(0)
    per_attendee_minute: Decimal = Decimal(0)
    ai_cost_multiplier: Decimal = Decimal(1)
    tax_rate: Decimal = Decimal(0)
    name: str = ""

    @property
    def title(self) -> str:
        """The plan's name as an invoice shows it."""
        return self.name or self.key.replace("-", " ").replace("_", " ").title()

    @property
    def minor_unit(self) -> Decimal:
        """The currency's smallest amount (0.01 for USD, 1 for JPY, 0.001 for KWD)."""
        return Decimal(1).scaleb(-get_currency_precision(self.currency))


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer: the rooms they own (room id globs, of one tenant or any) and their plan."""

    key: str
    name: str
    plan: Plan
    rooms: tuple[str, ...]
    tenant: str | None = None
    timezone: str = "UTC"
    stripe_customer: str | None = None
    address: str = ""
    email: str = ""
    tax_id: str = ""
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    def owns(self, tenant: str, room_id: str | None) -> bool:
        """Tell whether a room of a tenant is this customer's."""
        if room_id is None or (self.tenant is not None and tenant != self.tenant):
            return False
        return any(p.fullmatch(room_id) for p in self._patterns)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone whose midnight starts the customer's months."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class Billing:
    """A whole billing file."""

    issuer: Issuer
    plans: Mapping[str, Plan]
    customers: Mapping[str, Customer]

    def customer_of(self, tenant: str, room_id: str | None) -> Customer | None:
        """The customer who owns a room, if any (at most one: the file is checked for it)."""
        for customer in self.customers.values():
            if customer.owns(tenant, room_id):
                return customer
        return None


def glob_pattern(glob: str) -> re.Pattern[str]:
    """A room id glob as a regular expression: ``*`` is any text, ``?`` one character, and
    every other character itself (``[`` too: room ids are plain text)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.compile("".join(parts), re.DOTALL)


def globs_overlap(a: str, b: str) -> bool:
    """Tell whether some room id matches both globs (``*`` and ``?`` as above)."""

    @cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return meet(i + 1, j) or (j < len(b) and meet(i, j + 1))
        if j < len(b) and b[j] == "*":
            return meet(i, j + 1) or (i < len(a) and meet(i + 1, j))
        if i == len(a) or j == len(b):
            return False
        return (a[i] == b[j] or "?" in (a[i], b[j])) and meet(i + 1, j + 1)

    return meet(0, 0)


class _Table(Reader):
    """Read one table of the billing file: text, money and whole numbers, each checked."""

    def text(self, key: str, *, required: bool = False, hint: str = '"..."') -> str | None:
        self.read.add(key)
        if key not in self.table:
            if required:
                raise ConfigError(f"{self.where} has no {key}; add {key} = {hint}.")
            return None
        value = self.table[key]
        if not isinstance(value, str):
            raise ConfigError(f"{self.where}: {key} must be a string, like {key} = {hint}.")
        if len(value) > MAX_TEXT or not value.replace("\n", " ").isprintable():
            raise ConfigError(
                f"{self.where}: {key} must be printable text of at most {MAX_TEXT} characters "
                "(new lines are allowed)."
            )
        return value

    def money(self, key: str, default: Decimal, hint: str, *, most: Decimal = MAX_PRICE) -> Decimal:
        self.read.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, float):
            raise ConfigError(
                f"{self.where}: {key} is written as a number with a point, which TOML reads "
                f'inexactly; write it as a string, like {key} = "{hint}".'
            )
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f'{self.where}: {key} must be a string, like {key} = "{hint}".')
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            amount = Decimal("NaN")
        if not amount.is_finite():
            raise ConfigError(
                f'{self.where}: {key} is {value!r}, which is not a number; write {key} = "{hint}".'
            )
        if amount < 0:
            raise ConfigError(
                f"{self.where}: {key} is {value}, which is negative; prices are 0 or more."
            )
        if amount > most:
            raise ConfigError(f"{self.where}: {key} is {value}, more than {most}; check it.")
        if -amount.as_tuple().exponent > MAX_DECIMALS:  # type: ignore[operator]
            raise ConfigError(
                f"{self.where}: {key} is {value}, with more than {MAX_DECIMALS} decimals; round it."
            )
        # As an invoice prints it: "-0" is 0 (never "-0.00" on an invoice), "1E+3" is 1000.
        return Decimal(format(amount.copy_abs(), "f"))

    def whole(self, key: str, default: int, hint: str) -> int:
        self.read.add(key)
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"{self.where}: {key} must be a whole number of 0 or more, like {key} = {hint}."
            )
        return value


def _issuer(table: Any) -> Issuer:
    read = _Table(table, "issuer")
    name = read.text("name", required=True, hint='"Example Video Ltd"')
    prefix = read.text("invoice_prefix", hint='"EV-"')
    if prefix is not None and not _PREFIX.fullmatch(prefix):
        raise ConfigError(
            "issuer: invoice_prefix must be at most 20 letters, digits, '-', '_', '.' or '/', "
            'like invoice_prefix = "EV-".'
        )
    issuer = Issuer(
        name=name or "",
        address=read.text("address", hint='"1 Example Street\\nLondon"') or "",
        invoice_prefix="INV-" if prefix is None else prefix,
        email=read.text("email", hint='"billing@example.com"') or "",
        tax_id=read.text("tax_id", hint='"GB123456789"') or "",
        payment_terms=read.text("payment_terms", hint='"Due within 30 days"') or "",
    )
    read.done()
    return issuer


def _plan(key: str, table: Any) -> Plan:
    where = f"plans.{key}"
    if not _KEY.fullmatch(key):
        raise ConfigError(f"{where}: a plan's name is letters, digits, '.', '_' or '-'.")
    read = _Table(table, where)
    currency = read.text("currency", required=True, hint='"USD"') or ""
    if currency not in _currencies():
        raise ConfigError(
            f"{where}: currency is {currency!r}, which is not an ISO 4217 currency code; "
            'write three capital letters, like currency = "USD" or "EUR".'
        )
    plan = Plan(
        key=key,
        currency=currency,
        name=read.text("name", hint='"Standard"') or "",
        monthly_fee=read.money("monthly_fee", Decimal(0), "29.00"),
        included_minutes=read.whole("included_minutes", 0, "100"),
        per_billable_minute=read.money("per_billable_minute", Decimal(0), "0.04"),
        per_attendee_minute=read.money("per_attendee_minute", Decimal(0), "0.01"),
        ai_cost_multiplier=read.money("ai_cost_multiplier", Decimal(1), "1.25", most=Decimal(1000)),
        tax_rate=read.money("tax_rate", Decimal(0), "0.20", most=Decimal(1)),
    )
    read.done()
    return plan


@cache
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def _customer(key: str, table: Any, plans: Mapping[str, Plan]) -> Customer:
    where = f"customers.{key}"
    if not _KEY.fullmatch(key):
        raise ConfigError(f"{where}: a customer's name is letters, digits, '.', '_' or '-'.")
    read = _Table(table, where)
    plan_key = read.text("plan", required=True, hint='"standard"') or ""
    if plan_key not in plans:
        known = ", ".join(sorted(plans)) or "none yet"
        raise ConfigError(
            f"{where}: plan {plan_key!r} does not exist; add [plans.{plan_key}] or use one of: "
            f"{known}."
        )
    read.read.add("rooms")
    rooms = read.table.get("rooms")
    if (
        not isinstance(rooms, list)
        or not rooms
        or not all(isinstance(r, str) and r and len(r) <= 200 and r.isprintable() for r in rooms)
    ):
        raise ConfigError(
            f'{where}: rooms must be a list of room ids or globs, like rooms = ["weekly-*"].'
        )
    zone = read.text("timezone", hint='"Europe/London"') or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{where}: timezone {zone!r} is not a time zone; use an IANA name like "
            '"Europe/London" or "America/New_York".'
        ) from None
    stripe = read.text("stripe_customer", hint='"cus_123"')
    if stripe is not None and not re.fullmatch(r"[A-Za-z0-9_]{1,100}", stripe):
        raise ConfigError(f'{where}: stripe_customer must be a Stripe id, like "cus_123".')
    customer = Customer(
        key=key,
        name=read.text("name", required=True, hint='"ACME Corp"') or "",
        plan=plans[plan_key],
        rooms=tuple(rooms),
        tenant=read.text("tenant", hint='"acme"'),
        timezone=zone,
        stripe_customer=stripe,
        address=read.text("address", hint='"2 Customer Road\\nLeeds"') or "",
        email=read.text("email", hint='"accounts@example.com"') or "",
        tax_id=read.text("tax_id", hint='"GB987654321"') or "",
        _patterns=tuple(glob_pattern(r) for r in rooms),
    )
    read.done()
    return customer


def _fixed_ends(glob: str) -> tuple[str, str]:
    """The text every match of a glob starts with, and ends with: what comes before its
    first ``*`` or ``?``, and after its last."""
    wild = [n for n, c in enumerate(glob) if c in "*?"]
    if not wild:
        return glob, glob
    return glob[: wild[0]], glob[wild[-1] + 1 :]


def _check_overlaps(customers: Mapping[str, Customer]) -> None:
    """Refuse two customers who could own the same room.

    Every match of a glob starts with its fixed start, so two globs can overlap only when
    one's fixed start begins the other's; sorted by fixed start, those are neighbours. Only
    they, when their fixed ends agree too, get the full test: a file of thousands of
    customers is checked in a moment, where trying every pair took minutes."""
    listed = list(customers.values())
    globs = sorted(
        (*_fixed_ends(glob), n, g)
        for n, customer in enumerate(listed)
        for g, glob in enumerate(customer.rooms)
    )
    found: list[tuple[int, int, int, int]] = []
    for i, (start_a, end_a, n_a, g_a) in enumerate(globs):
        for start_b, end_b, n_b, g_b in globs[i + 1 :]:
            if not start_b.startswith(start_a):
                break
            if n_a == n_b or not (end_a.endswith(end_b) or end_b.endswith(end_a)):
                continue
            (n, g), (m, h) = sorted([(n_a, g_a), (n_b, g_b)])
            first, second = listed[n], listed[m]
            if first.tenant is not None and second.tenant not in (None, first.tenant):
                continue
            if globs_overlap(first.rooms[g], second.rooms[h]):
                found.append((n, m, g, h))
    if found:
        n, m, g, h = min(found)
        first, second = listed[n], listed[m]
        a, b = first.rooms[g], second.rooms[h]
        raise ConfigError(
            f"customers {first.key!r} and {second.key!r} could both own a room: "
            f"{a!r} and {b!r} match the same room ids; make the globs apart "
            "(or give each customer its tenant)."
        )


def parse_billing(text: str) -> Billing:
    """Read a billing file's text, or say in one sentence what is wrong and where."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the billing file is not valid TOML: {exc}.") from None
    top = _Table(document, "the billing file")
    for part in ("issuer", "plans", "customers"):
        top.read.add(part)
        if part not in document:
            raise ConfigError(
                f"the billing file has no [{part}] table; add it (see the README's Billing)."
            )
    top.done()
    issuer = _issuer(document["issuer"])
    plans_table = _Table(document["plans"], "plans").table
    plans = {key: _plan(key, table) for key, table in plans_table.items()}
    customers_table = _Table(document["customers"], "customers").table
    customers = {key: _customer(key, table, plans) for key, table in customers_table.items()}
    _check_overlaps(customers)
    return Billing(issuer=issuer, plans=plans, customers=customers)


def load_billing(path: str | None) -> Billing | None:
    """Read the billing file ``PNM_BILLING_FILE`` names; no file means no billing."""
    if not path:
        return None
    return load_file(path, "PNM_BILLING_FILE", parse_billing)
