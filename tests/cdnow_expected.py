"""What the marts should say about CDNOW, worked out in plain Python.

The figures come straight from CDNOW's master file (one line a purchase:
customer id, date, number of CDs, dollar value), never through SQL, so a test
can hold the warehouse's answers against them. A purchase is one order; a
customer's cohort is the month of their first purchase; period n is the n-th
month after it. Every helper takes `exclude`, the CDNOW customer ids a test
has taken out (a deleted customer, say), and keys months by their first day.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

# The copy the emulator ships and serves, so both sides read the same bytes.
SHIPPED = (
    Path(__file__).resolve().parent.parent
    / "pipelines/emulator/data/cdnow_master.txt.gz"
)

# The 23,570 customers first bought in 1997's first quarter; the data stops at
# the end of June 1998.
FIRST_COHORT = date(1997, 1, 1)
LAST_MONTH = date(1998, 6, 1)


@dataclass(frozen=True)
class Purchase:
    customer_id: str  # as in the file, zero-padded: "00001"
    purchased_on: date
    count_cds: int
    dollar_value: Decimal


def find_cdnow_master() -> Path:
    """The CDNOW master file the project ships."""
    assert SHIPPED.is_file(), f"the shipped CDNOW data is missing: {SHIPPED}"
    return SHIPPED


def read_cdnow(path: Path) -> list[Purchase]:
    """Every purchase of the master file, in file order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    purchases = []
    with opener(path, "rt", encoding="ascii") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) != 4 or not fields[0].isdigit():
                continue  # a header or a blank line
            customer_id, day, count_cds, dollars = fields
            purchases.append(
                Purchase(
                    customer_id=customer_id.zfill(5),
                    purchased_on=date(int(day[:4]), int(day[4:6]), int(day[6:])),
                    count_cds=int(count_cds),
                    dollar_value=Decimal(dollars),
                )
            )
    return purchases


def email_for(customer_id: str) -> str:
    """The email a test gives CDNOW customer `00001`: c00001@example.com."""
    return f"c{customer_id.zfill(5)}@example.com"


def month_of(day: date) -> date:
    return day.replace(day=1)


def months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def _kept(purchases: Iterable[Purchase], exclude: Iterable[str]) -> list[Purchase]:
    excluded = set(exclude)
    return [p for p in purchases if p.customer_id not in excluded]


def cohort_months(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[str, date]:
    """Each customer's cohort: the month of their first purchase."""
    first: dict[str, date] = {}
    for purchase in _kept(purchases, exclude):
        seen = first.get(purchase.customer_id)
        if seen is None or purchase.purchased_on < seen:
            first[purchase.customer_id] = purchase.purchased_on
    return {customer: month_of(day) for customer, day in first.items()}


def expected_cohort_sizes(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[date, int]:
    sizes: dict[date, int] = defaultdict(int)
    for cohort in cohort_months(purchases, exclude).values():
        sizes[cohort] += 1
    return dict(sizes)


def expected_gross_by_cohort_and_month(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[tuple[date, date], Decimal]:
    """Revenue of each cohort in each month it bought anything."""
    kept = _kept(purchases, exclude)
    cohorts = cohort_months(kept)
    gross: dict[tuple[date, date], Decimal] = defaultdict(Decimal)
    for purchase in kept:
        key = (cohorts[purchase.customer_id], month_of(purchase.purchased_on))
        gross[key] += purchase.dollar_value
    return dict(gross)


def expected_monthly_gross(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[date, Decimal]:
    gross: dict[date, Decimal] = defaultdict(Decimal)
    for purchase in _kept(purchases, exclude):
        gross[month_of(purchase.purchased_on)] += purchase.dollar_value
    return dict(gross)


def expected_monthly_orders(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[date, int]:
    orders: dict[date, int] = defaultdict(int)
    for purchase in _kept(purchases, exclude):
        orders[month_of(purchase.purchased_on)] += 1
    return dict(orders)


def expected_monthly_customers(
    purchases: Iterable[Purchase], exclude: Iterable[str] = ()
) -> dict[date, int]:
    """How many customers bought at least once in each month."""
    buyers: dict[date, set[str]] = defaultdict(set)
    for purchase in _kept(purchases, exclude):
        buyers[month_of(purchase.purchased_on)].add(purchase.customer_id)
    return {month: len(customers) for month, customers in buyers.items()}


def expected_retention(
    purchases: Iterable[Purchase],
    periods: int = 12,
    exclude: Iterable[str] = (),
) -> dict[tuple[date, int], float]:
    """Share of each cohort buying in periods 0 to `periods - 1`."""
    kept = _kept(purchases, exclude)
    cohorts = cohort_months(kept)
    sizes = expected_cohort_sizes(kept)

    active: dict[tuple[date, int], set[str]] = defaultdict(set)
    for purchase in kept:
        cohort = cohorts[purchase.customer_id]
        period = months_between(cohort, month_of(purchase.purchased_on))
        active[cohort, period].add(purchase.customer_id)

    return {
        (cohort, period): len(active.get((cohort, period), ())) / size
        for cohort, size in sizes.items()
        for period in range(periods)
    }
