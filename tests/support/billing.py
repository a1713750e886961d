"""The example billing file, for tests: one customer, ACME Corp, who owns the corpus room.

The corpus session (room ``weekly-standup``, 2025-11-26) makes ACME's draft for 2025-11
36.98 USD: the 29.00 fee, 124 attendee minutes at 0.01, AI usage marked up 25 %, 20 % tax.
"""

from __future__ import annotations

from pathlib import Path

CORPUS_MONTH = "2025-11"
CORPUS_TOTAL = "36.98"

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "billing.toml"
EXAMPLE_BILLING = SAMPLE.read_text(encoding="utf-8").split("\n# A second customer")[0]
"""The example billing file as the issue wrote it: samples/billing.toml without its second
customer (whose rooms are the samples')."""


def billing_file(folder: Path, text: str = EXAMPLE_BILLING) -> Path:
    """Write a billing file into ``folder``; return its path."""
    path = folder / "billing.toml"
    path.write_text(text, encoding="utf-8")
    return path
