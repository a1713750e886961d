"""The example billing file, for tests: one customer, ACME Corp, who owns the corpus room.

The corpus session (room ``weekly-standup``, 2025-11-26) makes ACME's draft for 2025-11
36.98 USD: the 29.00 fee, 124 attendee minutes at 0.01, AI usage marked up 25 %, 20 % tax.
"""

from __future__ import annotations

from pathlib import Path

CORPUS_MONTH = "2025-11"
CORPUS_TOTAL = "36.98"

EXAMPLE_BILLING = """\
[issuer]
name = "Example Video Ltd"
address = "1 Example Street\\nLondon"
invoice_prefix = "EV-"             # numbers EV-2026-0001, EV-2026-0002, … gapless per year

[plans.standard]
currency = "USD"  # the plugNmeet server's cost unit, or convert with ai_cost_multiplier
monthly_fee = "29.00"
included_minutes = 100             # billable minutes included each month
per_billable_minute = "0.04"       # beyond the included minutes
per_attendee_minute = "0.01"
ai_cost_multiplier = "1.25"        # the reported AI cost, marked up 25 %
tax_rate = "0.20"

[customers.acme]
name = "ACME Corp"
plan = "standard"
rooms = ["weekly-*", "board-*"]    # room_id globs; a tenant = "…" key narrows to one tenant
timezone = "Europe/London"         # a month starts at midnight here (default UTC)
stripe_customer = "cus_123"        # used by the stripe-meter destination
"""


def billing_file(folder: Path, text: str = EXAMPLE_BILLING) -> Path:
    """Write a billing file into ``folder``; return its path."""
    path = folder / "billing.toml"
    path.write_text(text, encoding="utf-8")
    return path
