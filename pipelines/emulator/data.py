"""The emulator's world: customers and their conversion events, held as columns.

A `Dataset` is built once, either from the CDNOW purchase history shipped in
`data/` (`load_cdnow`) or synthetically at any size (`synthetic`), and never
changes afterwards. `pipelines.emulator.store` decides what of it is visible at
a given instant. Every random choice is seeded, so the same arguments always
build the same world. `DEFINITIONS.md` beside this file explains the rules.

Everything is a numpy array, one entry per customer or per event, because a
million customers must fit in a small process: Python objects per customer
would cost ten times the memory and most of the build time.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import gzip
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faker import Faker
from numpy.dtypes import StringDType

__all__ = [
    "ABANDONED",
    "CHARGEBACK",
    "Dataset",
    "NO_REVERSAL",
    "PURCHASE",
    "REFUND",
    "load_cdnow",
    "synthetic",
]

CDNOW_FILE = Path(__file__).parent / "data" / "cdnow_master.txt.gz"

DAY = 86_400
WINDOW_START = calendar.timegm((1997, 1, 1, 0, 0, 0))
WINDOW_END = calendar.timegm((1998, 7, 1, 0, 0, 0))  # exclusive
REVERSALS_END = calendar.timegm((1998, 9, 1, 0, 0, 0))  # exclusive
# Orders get a time of day before 23:00 UTC, so their UTC date stays the
# date CDNOW recorded whatever the reader's rounding.
LATEST_TIME_OF_DAY = 23 * 3600

# Event kinds, and what later happened to a purchase.
PURCHASE, ABANDONED = 0, 1
NO_REVERSAL, REFUND, CHARGEBACK = 0, 1, 2

REFUND_RATE = 0.03
CHARGEBACK_RATE = 0.01
REVERSAL_MAX_DAYS = 60
BUYER_CART_RATE = 0.10
CART_LOOKBACK_DAYS = 30
CDNOW_LEAD_RATE = 0.10  # leads added, relative to the CDNOW buyers kept
SYNTHETIC_LEAD_SHARE = 0.20
SUBSCRIPTION_RATE = 0.08
MAX_PRODUCT_ENTRIES = 5

GENRES = (
    "CD - Rock",
    "CD - Pop",
    "CD - Jazz",
    "CD - Classical",
    "CD - Country",
    "CD - Blues",
    "CD - R&B",
    "CD - Hip-Hop",
    "CD - Electronic",
    "CD - Folk",
    "CD - Latin",
    "CD - Soundtracks",
)
SUBSCRIPTION_PRODUCTS = ("Monthly Bundle", "CD of the Month Club", "Quarterly Box")

# Order ids are `conv-` and a 64-bit mix of a key that is unique per event;
# carts and leads' carts draw keys from their own ranges.
_CART_KEYS = 1 << 40
_LEAD_CART_KEYS = 2 << 40

# Where customers live: Faker locale, ISO country, calling code, share, and
# the Faker provider that names a state or region there.
LOCALES = (
    ("en_US", "US", "+1", 0.70, "state_abbr"),
    ("en_CA", "CA", "+1", 0.06, "province_abbr"),
    ("en_GB", "GB", "+44", 0.08, "county"),
    ("de_DE", "DE", "+49", 0.05, "state"),
    ("fr_FR", "FR", "+33", 0.05, "region"),
    ("es_ES", "ES", "+34", 0.04, "autonomous_community"),
    ("pt_BR", "BR", "+55", 0.02, "estado_sigla"),
)
_POOL_SIZES = {"first": 1000, "last": 1000, "street": 1000, "place": 200}

# Email shapes that real lists hold, each given to 2% of customers by a hash
# of the customer id; everyone else gets a plain lowercase ASCII address.
# None of these words holds a digit: the customer id is the only run of
# digits in an email, which keeps emails unique after any case folding.
(
    PLAIN,
    PLUS_TAG,
    MIXED_CASE,
    DOTS,
    APOSTROPHE,
    NON_ASCII,
    SLASH,
    PERCENT,
) = range(8)
EMAIL_SHAPE_PERCENT = 2
EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "aol.com",
    "outlook.com",
    "example.com",
    "example.net",
    "web.de",
    "orange.fr",
)
EMAIL_TAGS = ("promo", "news", "shop", "cdnow", "deals")
APOSTROPHE_NAMES = ("O'Neil", "O'Brien", "D'Angelo", "O'Connor", "D'Arcy")
NON_ASCII_FIRST_NAMES = (
    "José",
    "Zoë",
    "François",
    "Jürgen",
    "Søren",
    "Inès",
    "Björn",
    "Chloé",
    "Renée",
    "Núria",
)

STRING = StringDType()


@dataclass(frozen=True, eq=False)
class Dataset:
    """Customers and their conversion events, as parallel numpy arrays.

    Customers are numbered by an internal index `0..n_customers-1`, in
    ascending order of their source id. Events (purchase orders and abandoned
    carts) are grouped by customer and ordered by time within a customer:
    customer `i` owns events `offsets[i]:offsets[i + 1]`, and subscriptions
    `subscription_offsets[i]:subscription_offsets[i + 1]`. Times are whole
    seconds since the Unix epoch, UTC; money is integer cents.
    """

    source: str
    seed: int

    customer_id: np.ndarray  # int64, the source's id (CDNOW id, or 1..n)
    email: np.ndarray  # StringDType, like every identity column
    first_name: np.ndarray
    last_name: np.ndarray
    phone: np.ndarray
    country: np.ndarray
    state: np.ndarray
    city: np.ndarray
    address: np.ndarray

    offsets: np.ndarray  # int64, n_customers + 1
    event_customer: np.ndarray  # int32 internal index
    event_time: np.ndarray  # int64
    event_kind: np.ndarray  # int8, PURCHASE or ABANDONED
    event_cents: np.ndarray  # int64
    event_units: np.ndarray  # int16, CDs in the order or cart
    event_genre: np.ndarray  # uint8, first of the product entries
    event_key: np.ndarray  # uint64, the order id's number
    reversal: np.ndarray  # int8, NO_REVERSAL, REFUND or CHARGEBACK
    reversal_time: np.ndarray  # int64, 0 when there is none

    subscription_offsets: np.ndarray  # int64, n_customers + 1
    subscription_id: np.ndarray  # int64
    subscription_time: np.ndarray  # int64, the order it came with
    subscription_product: np.ndarray  # uint8 into SUBSCRIPTION_PRODUCTS

    @property
    def n_customers(self) -> int:
        """How many customers (buyers and leads) the dataset holds."""
        return len(self.customer_id)

    @property
    def n_events(self) -> int:
        """How many purchase orders and abandoned carts the dataset holds."""
        return len(self.event_time)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays, string storage included (approximately)."""
        total = 0
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                total += value.nbytes
                if value.dtype == STRING:
                    # Strings over 15 bytes live outside the 16-byte slots.
                    lengths = np.strings.str_len(value)
                    total += int(lengths[lengths > 15].sum())
        return total

    def order_id(self, event: int) -> str:
        """The public id of an event, like `conv-1f0c...`."""
        return f"conv-{int(self.event_key[event]):016x}"

    def products(self, event: int) -> list[str]:
        """The product entries of an event: one per CD, at most five."""
        count = min(max(int(self.event_units[event]), 1), MAX_PRODUCT_ENTRIES)
        first = int(self.event_genre[event])
        return [GENRES[(first + step) % len(GENRES)] for step in range(count)]

    def summary(self) -> dict[str, int]:
        """Counts of what the dataset holds, for logs and the CLI."""
        purchases = self.event_kind == PURCHASE
        buyers = np.add.reduceat(purchases, self.offsets[:-1]) > 0
        return {
            "customers": self.n_customers,
            "buyers": int(buyers.sum()),
            "leads": int((~buyers).sum()),
            "orders": int(purchases.sum()),
            "abandoned_carts": int((~purchases).sum()),
            "refunds": int((self.reversal == REFUND).sum()),
            "chargebacks": int((self.reversal == CHARGEBACK).sum()),
            "subscriptions": len(self.subscription_id),
            "nbytes": self.nbytes,
        }


def load_cdnow(seed: int = 0, max_customers: int | None = None) -> Dataset:
    """Build the dataset from the shipped CDNOW purchase history.

    Each CDNOW row becomes one purchase order of its dollar value on its date,
    at a seeded time of day. Refunds, chargebacks, abandoned carts, leads and
    subscriptions are added at the rates `DEFINITIONS.md` gives.
    `max_customers` keeps only CDNOW ids up to that number (for quick tests);
    the extras of the customers kept do not depend on it.
    """
    if max_customers is not None and max_customers < 1:
        raise ValueError(f"`max_customers` must be at least 1, got {max_customers}")
    raw = _cdnow_rows()
    rngs = _streams(seed, "cdnow", 6)
    n_rows = len(raw["customer"])

    # Every draw is made over the whole file before trimming, so a customer's
    # orders and extras are the same in a trimmed dataset and the full one.
    times = raw["day"] * DAY + rngs[0].integers(0, LATEST_TIME_OF_DAY, n_rows)
    purchases = {
        "customer": raw["customer"],
        "time": times,
        "cents": raw["cents"],
        "units": raw["units"],
        "genre": _genres(n_rows, rngs[1]),
        "key": np.arange(n_rows, dtype=np.uint64),
    }
    purchases = _sorted_by_customer(purchases)
    _add_reversals(purchases, rngs[2])
    carts = _buyer_carts(purchases, rngs[3], raw)
    subscriptions = _subscriptions(purchases, rngs[4])

    if max_customers is not None:
        purchases = _take(purchases, purchases["customer"] <= max_customers)
        carts = _take(carts, carts["customer"] <= max_customers)
        subscriptions = _take(subscriptions, subscriptions["customer"] <= max_customers)

    buyer_ids = np.unique(purchases["customer"])
    n_leads = round(CDNOW_LEAD_RATE * len(buyer_ids))
    first_lead = int(buyer_ids[-1]) + 1 if len(buyer_ids) else 1
    lead_ids = np.arange(first_lead, first_lead + n_leads, dtype=np.int64)
    lead_carts = _lead_carts(lead_ids, rngs[5], raw)

    customer_ids = np.concatenate([buyer_ids, lead_ids])
    return _assemble(
        "cdnow", seed, customer_ids, purchases, [carts, lead_carts], subscriptions
    )


def synthetic(customers: int, seed: int = 0) -> Dataset:
    """Build a dataset of `customers` customers shaped like CDNOW.

    A fifth of the customers are leads who only abandoned carts. Each buyer
    replays the purchases of a random CDNOW customer (counts, CDs, values and
    gaps between orders) from a random first day in the window 1997-01-01 to
    1998-06-30; orders that would fall after the window are dropped, as a
    shorter history would have them. Extras follow the CDNOW rates.
    """
    if customers < 1:
        raise ValueError(f"`customers` must be at least 1, got {customers}")
    raw = _cdnow_rows()
    rngs = _streams(seed, "synthetic", 8)
    n_leads = round(SYNTHETIC_LEAD_SHARE * customers)
    n_buyers = customers - n_leads

    # Pick a CDNOW template for each buyer and repeat its rows.
    row_starts = np.flatnonzero(np.r_[True, np.diff(raw["customer"]) != 0])
    row_counts = np.diff(np.r_[row_starts, len(raw["customer"])])
    template = rngs[0].integers(0, len(row_starts), n_buyers)
    counts = row_counts[template]
    buyer = np.repeat(np.arange(n_buyers), counts)
    within = np.arange(len(buyer)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows = row_starts[template][buyer] + within

    # Shift each template so its first order lands on a random window day.
    window_days = (WINDOW_END - WINDOW_START) // DAY
    first_day = rngs[1].integers(0, window_days, n_buyers) + WINDOW_START // DAY
    template_first = raw["day"][row_starts[template]]
    day = raw["day"][rows] - template_first[buyer] + first_day[buyer]
    kept = day < WINDOW_END // DAY
    buyer, rows, day = buyer[kept], rows[kept], day[kept]
    time_of_day = rngs[2].integers(0, LATEST_TIME_OF_DAY, len(day))

    purchases = {
        "customer": buyer.astype(np.int64) + 1,
        "time": day * DAY + time_of_day,
        "cents": raw["cents"][rows],
        "units": raw["units"][rows],
        "genre": _genres(len(day), rngs[3]),
        "key": np.arange(len(day), dtype=np.uint64),
    }
    purchases = _sorted_by_customer(purchases)
    _add_reversals(purchases, rngs[4])
    carts = _buyer_carts(purchases, rngs[5], raw)
    subscriptions = _subscriptions(purchases, rngs[6])

    lead_ids = np.arange(n_buyers + 1, customers + 1, dtype=np.int64)
    lead_carts = _lead_carts(lead_ids, rngs[7], raw)
    customer_ids = np.arange(1, customers + 1, dtype=np.int64)
    return _assemble(
        "synthetic",
        seed,
        customer_ids,
        purchases,
        [carts, lead_carts],
        subscriptions,
    )


# --- CDNOW rows ----------------------------------------------------------------


@functools.cache
def _cdnow_rows() -> dict[str, np.ndarray]:
    """The shipped CDNOW file as columns: customer, day, units, cents."""
    with gzip.open(CDNOW_FILE, "rt", encoding="ascii") as stream:
        tokens = stream.read().split()
    header, values = tokens[:4], np.array(tokens[4:]).reshape(-1, 4)
    if header != ["customer_id", "date", "number_of_cds", "dollar_value"]:
        raise ValueError(f"unexpected CDNOW header {header}")

    # Few distinct dates: convert those once rather than every row.
    dates, inverse = np.unique(values[:, 1], return_inverse=True)
    epoch = dt.date(1970, 1, 1)
    date_days = np.array(
        [(dt.datetime.strptime(d, "%Y%m%d").date() - epoch).days for d in dates]
    )
    rows = {
        "customer": values[:, 0].astype(np.int64),
        "day": date_days[inverse].astype(np.int64),
        "units": values[:, 2].astype(np.int16),
        # Dollar values have two decimals, so rounding the float is exact.
        "cents": np.rint(values[:, 3].astype(np.float64) * 100).astype(np.int64),
    }
    for column in rows.values():
        column.flags.writeable = False
    return rows


# --- Seeded extras -------------------------------------------------------------


def _streams(seed: int, purpose: str, count: int) -> list[np.random.Generator]:
    """Independent generators, so adding a draw to one leaves the others be."""
    if seed < 0:
        raise ValueError(f"`seed` must be at least 0, got {seed}")
    tag = int.from_bytes(purpose.encode(), "little")
    children = np.random.SeedSequence([seed, tag]).spawn(count)
    return [np.random.default_rng(child) for child in children]


def _sorted_by_customer(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.lexsort((table["time"], table["customer"]))
    return {name: column[order] for name, column in table.items()}


def _take(table: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: column[mask] for name, column in table.items()}


def _add_reversals(purchases: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """Refund or charge back a share of the orders, 1 to 60 days later.

    Free orders are never reversed: there is nothing to pay back, and a
    refund of nothing would count a customer as refunded with no refunds.
    """
    n = len(purchases["time"])
    draw = np.where(purchases["cents"] > 0, rng.random(n), 1.0)
    refund = draw < REFUND_RATE
    chargeback = ~refund & (draw < REFUND_RATE + CHARGEBACK_RATE)
    reversal = np.select([refund, chargeback], [REFUND, CHARGEBACK], NO_REVERSAL)
    reversal = reversal.astype(np.int8)
    delay = rng.integers(DAY, REVERSAL_MAX_DAYS * DAY, n, endpoint=True)
    purchases["reversal"] = reversal
    purchases["reversal_time"] = np.where(
        reversal != NO_REVERSAL, purchases["time"] + delay, 0
    )
    assert purchases["reversal_time"].max(initial=0) < REVERSALS_END


def _group_starts(customers: np.ndarray) -> np.ndarray:
    """Where each run of equal, sorted customer ids starts."""
    return np.flatnonzero(np.r_[True, customers[1:] != customers[:-1]])


def _genres(count: int, rng: np.random.Generator) -> np.ndarray:
    """The genre of the first product entry of `count` events."""
    return rng.integers(0, len(GENRES), count).astype(np.uint8)


def _cart_contents(
    count: int, rng: np.random.Generator, raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """CDs, cents and genre for `count` carts, drawn from real paid orders."""
    paid = np.flatnonzero(raw["cents"] > 0)
    rows = paid[rng.integers(0, len(paid), count)]
    return {
        "units": raw["units"][rows],
        "cents": raw["cents"][rows],
        "genre": _genres(count, rng),
    }


def _buyer_carts(
    purchases: dict[str, np.ndarray],
    rng: np.random.Generator,
    raw: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One abandoned cart for a share of buyers, before or between orders.

    The cart falls between 30 days before the first order (not before the
    window) and the last order, so it shows up before the first purchase for
    some buyers and between purchases for others.
    """
    starts = _group_starts(purchases["customer"])
    ends = np.r_[starts[1:], len(purchases["customer"])] - 1
    chosen = rng.random(len(starts)) < BUYER_CART_RATE
    first = purchases["time"][starts[chosen]]
    last = purchases["time"][ends[chosen]]
    low = np.maximum(WINDOW_START, first - CART_LOOKBACK_DAYS * DAY)
    times = low + (rng.random(len(low)) * (last - low)).astype(np.int64)
    return {
        "customer": purchases["customer"][starts[chosen]],
        "time": times,
        **_cart_contents(len(times), rng, raw),
        "key": _CART_KEYS + np.flatnonzero(chosen).astype(np.uint64),
    }


def _lead_carts(
    lead_ids: np.ndarray, rng: np.random.Generator, raw: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One to three abandoned carts for each lead, anywhere in the window."""
    counts = rng.integers(1, 3, len(lead_ids), endpoint=True)
    customers = np.repeat(lead_ids, counts)
    return {
        "customer": customers,
        "time": rng.integers(WINDOW_START, WINDOW_END, len(customers)),
        **_cart_contents(len(customers), rng, raw),
        "key": _LEAD_CART_KEYS + np.arange(len(customers), dtype=np.uint64),
    }


def _subscriptions(
    purchases: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A subscription for a share of buyers, created with one of their orders."""
    starts = _group_starts(purchases["customer"])
    counts = np.diff(np.r_[starts, len(purchases["customer"])])
    chosen = np.flatnonzero(rng.random(len(starts)) < SUBSCRIPTION_RATE)
    nth = (rng.random(len(chosen)) * counts[chosen]).astype(np.int64)
    order = starts[chosen] + nth
    product = rng.integers(0, len(SUBSCRIPTION_PRODUCTS), len(order))
    return {
        "customer": purchases["customer"][order],
        "time": purchases["time"][order],
        "product": product.astype(np.uint8),
        "id": np.arange(1, len(order) + 1, dtype=np.int64),
    }


# --- Assembly ------------------------------------------------------------------


def _assemble(
    source: str,
    seed: int,
    customer_ids: np.ndarray,
    purchases: dict[str, np.ndarray],
    cart_tables: list[dict[str, np.ndarray]],
    subscriptions: dict[str, np.ndarray],
) -> Dataset:
    """Join purchases and carts into one event table grouped by customer."""
    n_customers = len(customer_ids)
    carts = {
        name: np.concatenate([table[name] for table in cart_tables])
        for name in cart_tables[0]
    }
    n_purchases, n_carts = len(purchases["time"]), len(carts["time"])

    def joined(name: str, cart_value: int | None = None) -> np.ndarray:
        cart_column = (
            carts[name]
            if cart_value is None
            else np.full(n_carts, cart_value, dtype=purchases[name].dtype)
        )
        return np.concatenate([purchases[name], cart_column])

    customer = np.searchsorted(customer_ids, joined("customer"))
    time = joined("time")
    order = np.lexsort((time, customer))
    kind = np.r_[
        np.full(n_purchases, PURCHASE, np.int8), np.full(n_carts, ABANDONED, np.int8)
    ]
    keys = joined("key").astype(np.uint64)

    event_customer = customer[order].astype(np.int32)
    offsets = np.searchsorted(event_customer, np.arange(n_customers + 1))
    # The store aggregates with reduceat, which needs no empty group.
    if np.any(np.diff(offsets) == 0):
        raise AssertionError("every customer needs at least one event")

    sub_customer = np.searchsorted(customer_ids, subscriptions["customer"])
    sub_order = np.lexsort((subscriptions["time"], sub_customer))
    identity = _identities(customer_ids, seed)
    return Dataset(
        source=source,
        seed=seed,
        customer_id=customer_ids.astype(np.int64),
        **identity,
        offsets=offsets.astype(np.int64),
        event_customer=event_customer,
        event_time=time[order].astype(np.int64),
        event_kind=kind[order],
        event_cents=joined("cents")[order].astype(np.int64),
        event_units=joined("units")[order].astype(np.int16),
        event_genre=joined("genre")[order],
        event_key=_mix(keys + _salt(seed, f"{source}-orders"))[order],
        reversal=joined("reversal", NO_REVERSAL)[order],
        reversal_time=joined("reversal_time", 0)[order],
        subscription_offsets=np.searchsorted(
            sub_customer[sub_order], np.arange(n_customers + 1)
        ).astype(np.int64),
        subscription_id=subscriptions["id"][sub_order],
        subscription_time=subscriptions["time"][sub_order],
        subscription_product=subscriptions["product"][sub_order],
    )


# --- Identities ------------------------------------------------------------------


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on uint64 that scrambles bits well."""
    x = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _salt(seed: int, purpose: str) -> np.uint64:
    tag = int.from_bytes(purpose.encode()[:8], "little")
    return _mix(np.array([seed ^ tag], dtype=np.uint64))[0]


def _per_id(ids: np.ndarray, seed: int, purpose: str, modulus: int) -> np.ndarray:
    """A value in `0..modulus-1` that depends only on the id, seed and purpose."""
    mixed = _mix(ids.astype(np.uint64) + _salt(seed, purpose))
    return (mixed % np.uint64(modulus)).astype(np.int64)


@dataclass(frozen=True)
class _Pools:
    """Faker-made names and places, per locale, concatenated."""

    start: dict[str, np.ndarray]  # per pool, where each locale's part starts
    size: dict[str, np.ndarray]
    first: np.ndarray
    first_ascii: np.ndarray
    last: np.ndarray
    last_ascii: np.ndarray
    street: np.ndarray
    state: np.ndarray
    city: np.ndarray


def _ascii_word(text: str) -> str:
    """Lowercase ASCII letters of a name, for the plain part of an email."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if "a" <= ch <= "z") or "user"


@functools.lru_cache(maxsize=4)
def _identity_pools(seed: int) -> _Pools:
    """Small pools from a seeded Faker; customers pick from them by id.

    A Faker call per customer would take minutes for a million customers;
    picking from pools keeps identities realistic and the build fast.
    """
    names = ("first", "last", "street", "state", "city")
    parts: dict[str, list[str]] = {name: [] for name in names}
    sizes: dict[str, list[int]] = {name: [] for name in _POOL_SIZES}
    for locale, _, _, share, state_provider in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        size = {
            name: max(20, round(total * share)) for name, total in _POOL_SIZES.items()
        }
        parts["first"] += [fake.first_name() for _ in range(size["first"])]
        parts["last"] += [fake.last_name() for _ in range(size["last"])]
        parts["street"] += [
            fake.street_address().replace("\n", ", ") for _ in range(size["street"])
        ]
        for _ in range(size["place"]):
            parts["state"].append(getattr(fake, state_provider)())
            parts["city"].append(fake.city())
        for name in _POOL_SIZES:
            sizes[name].append(size[name])

    def starts(counts: list[int]) -> np.ndarray:
        return np.cumsum([0, *counts[:-1]])

    return _Pools(
        start={name: starts(counts) for name, counts in sizes.items()},
        size={name: np.array(counts) for name, counts in sizes.items()},
        first=np.array(parts["first"], dtype=STRING),
        first_ascii=np.array([_ascii_word(s) for s in parts["first"]], dtype=STRING),
        last=np.array(parts["last"], dtype=STRING),
        last_ascii=np.array([_ascii_word(s) for s in parts["last"]], dtype=STRING),
        street=np.array(parts["street"], dtype=STRING),
        state=np.array(parts["state"], dtype=STRING),
        city=np.array(parts["city"], dtype=STRING),
    )


def _identities(ids: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Name, email, phone and address for each id; each a function of its id."""
    pools = _identity_pools(seed)
    shares = np.array([share for *_, share, _ in LOCALES])
    cumulative = np.cumsum(shares / shares.sum())
    draw = _per_id(ids, seed, "locale", 1 << 30) / float(1 << 30)
    locale = np.searchsorted(cumulative, draw, side="right")
    locale = np.minimum(locale, len(LOCALES) - 1)

    def pick(pool: str, purpose: str) -> np.ndarray:
        within = _per_id(ids, seed, purpose, 1 << 30) % pools.size[pool][locale]
        return pools.start[pool][locale] + within

    first_at, last_at = pick("first", "first"), pick("last", "last")
    place_at = pick("place", "place")
    first, last = pools.first[first_at], pools.last[last_at]
    shape = _email_shapes(ids, seed)

    # Two shapes come with the name they were made from.
    apostrophe_at = _per_id(ids, seed, "apostrophe", len(APOSTROPHE_NAMES))
    non_ascii_at = _per_id(ids, seed, "non-ascii", len(NON_ASCII_FIRST_NAMES))
    is_apostrophe, is_non_ascii = shape == APOSTROPHE, shape == NON_ASCII
    last[is_apostrophe] = np.array(APOSTROPHE_NAMES, dtype=STRING)[
        apostrophe_at[is_apostrophe]
    ]
    first[is_non_ascii] = np.array(NON_ASCII_FIRST_NAMES, dtype=STRING)[
        non_ascii_at[is_non_ascii]
    ]

    countries = np.array([country for _, country, *_ in LOCALES], dtype=STRING)
    codes = np.array([code for _, _, code, *_ in LOCALES], dtype=STRING)
    # National numbers of ten digits that do not start with 0 or 1.
    national = 2_000_000_000 + _per_id(ids, seed, "phone", 8_000_000_000)
    email = _emails(
        ids,
        seed,
        shape,
        pools.first_ascii[first_at],
        pools.last_ascii[last_at],
        first,
        last,
    )
    return {
        "email": email,
        "first_name": first,
        "last_name": last,
        "phone": codes[locale] + national.astype(STRING),
        "country": countries[locale],
        "state": pools.state[place_at],
        "city": pools.city[place_at],
        "address": pools.street[pick("street", "street")],
    }


def _email_shapes(ids: np.ndarray, seed: int) -> np.ndarray:
    percent = _per_id(ids, seed, "email-shape", 100)
    shape = percent // EMAIL_SHAPE_PERCENT + 1
    return np.where(shape <= PERCENT, shape, PLAIN)


def _emails(
    ids: np.ndarray,
    seed: int,
    shape: np.ndarray,
    first_ascii: np.ndarray,
    last_ascii: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
) -> np.ndarray:
    """Emails that embed the id, in the shapes real mailing lists hold."""
    number = ids.astype(STRING)
    domains = np.array(EMAIL_DOMAINS, dtype=STRING)
    domain = domains[_per_id(ids, seed, "domain", len(EMAIL_DOMAINS))]
    local = first_ascii + last_ascii + number

    def put(which: int, make) -> None:
        mask = shape == which
        local[mask] = make(mask)

    tags = np.array(EMAIL_TAGS, dtype=STRING)
    tag = tags[_per_id(ids, seed, "tag", len(EMAIL_TAGS))]
    put(PLUS_TAG, lambda m: local[m] + "+" + tag[m])
    put(
        MIXED_CASE,
        lambda m: (
            np.strings.capitalize(first_ascii[m])
            + np.strings.upper(last_ascii[m])
            + number[m]
        ),
    )
    put(DOTS, lambda m: first_ascii[m] + "." + last_ascii[m] + "." + number[m])
    put(APOSTROPHE, lambda m: np.strings.lower(last[m]) + number[m])
    put(NON_ASCII, lambda m: np.strings.lower(first[m]) + last_ascii[m] + number[m])
    put(SLASH, lambda m: first_ascii[m] + "/" + last_ascii[m] + number[m])
    put(PERCENT, lambda m: first_ascii[m] + "%" + last_ascii[m] + number[m])

    mixed = shape == MIXED_CASE
    domain[mixed] = np.strings.capitalize(domain[mixed])
    return local + "@" + domain
