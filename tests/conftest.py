"""Fixtures shared by the test modules: an emulator, served, and a client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator, Faults

#: Small enough to build in a second or two, large enough for many pages.
SMALL_CDNOW_CUSTOMERS = 2000


@pytest.fixture(scope="module")
def small_emulator() -> Emulator:
    """An emulator over the first 2,000 CDNOW customers, one per module."""
    return Emulator.cdnow(max_customers=SMALL_CDNOW_CUSTOMERS)


@pytest.fixture(scope="module")
def served_url(small_emulator: Emulator) -> Iterator[str]:
    """`small_emulator` served over a real loopback socket: its base URL."""
    with small_emulator.serve() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def api(served_url: str) -> Iterator[httpx.Client]:
    """A client of `served_url` that sends the default access key."""
    headers = {"EF-Access-Key": DEFAULT_KEY}
    with httpx.Client(base_url=served_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def pristine(small_emulator: Emulator) -> Iterator[Emulator]:
    """`small_emulator`, put back as built after the test: clock, faults, keys."""
    as_of = small_emulator.as_of
    yield small_emulator
    small_emulator.faults = Faults()
    small_emulator.set_clock(as_of)
    small_emulator.reset_counts()
    small_emulator.brand = DEFAULT_BRAND
    small_emulator.key = DEFAULT_KEY
    small_emulator.module_access = True
