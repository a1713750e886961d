"""Fixtures the database tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sink import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A local destination that records what it is sent and answers 200."""
    with Sink() as running:
        yield running
