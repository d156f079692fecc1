"""The emulator's world as of an instant: list pages, counts and customer details.

A `Store` wraps a `Dataset` and a clock. Only events at or before the clock
exist: a customer appears with their first event, totals grow with each
order, and a refund or chargeback counts from the moment it happens. The HTTP
layer turns requests into calls on this class and its answers into JSON.
`DEFINITIONS.md` beside this file states every field's meaning.

Lists are answered from a snapshot: per-customer totals computed with numpy
for one instant, plus sort orders computed on first use. A snapshot depends
only on which events are visible, so it is cached under the number of changes
seen so far and reused while the clock moves between two events.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from pipelines.emulator.data import (
    ABANDONED,
    CHARGEBACK,
    DAY,
    NO_REVERSAL,
    PURCHASE,
    REFUND,
    SUBSCRIPTION_PRODUCTS,
    Dataset,
)

__all__ = ["COLUMNS", "DEFAULT_AS_OF", "Store", "ValidationError"]

COLUMNS = (
    "customer_email",
    "customer_name",
    "customer_first_name",
    "customer_last_name",
    "customer_phone",
    "customer_country",
    "customer_state",
    "customer_city",
    "first_order_date",
    "last_order_date",
    "total_orders",
    "total_revenue",
    "total_refunds",
    "total_chargebacks",
    "lifetime_value",
    "order_frequency",
    "products_purchased",
    "is_abandoned_customer",
    "abandoned_value",
)
TYPES = ("customer", "abandon")
SORT_DIRECTIONS = ("asc", "desc")
DEFAULT_SORT = "last_order_date"
DEFAULT_SORT_DIRECTION = "desc"
# After the last CDNOW purchase (1998-06-30) and before any refund ends.
DEFAULT_AS_OF = datetime(1998, 7, 1, tzinfo=UTC)
SUBSCRIPTION_INTERVAL_DAYS = 30

# Identity columns and the dataset arrays they come from.
_IDENTITY = {
    "customer_email": "email",
    "customer_first_name": "first_name",
    "customer_last_name": "last_name",
    "customer_phone": "phone",
    "customer_country": "country",
    "customer_state": "state",
    "customer_city": "city",
}
_MONEY = (
    "total_revenue",
    "total_refunds",
    "total_chargebacks",
    "lifetime_value",
    "abandoned_value",
)
_NULL_LAST = np.iinfo(np.int64).max
_MAX_SNAPSHOTS = 2  # the list's delayed instant and the details' instant
_MAX_SORT_ORDERS = 12  # a million int32 positions each
_MAX_SEARCHES = 8
_EPOCH = date(1970, 1, 1)
_STATUSES = {NO_REVERSAL: "approved", REFUND: "refunded", CHARGEBACK: "chargeback"}


class ValidationError(ValueError):
    """A request parameter was refused; the HTTP layer answers 422 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Totals:
    """Per-customer aggregates as of one instant, one entry a customer.

    Money is in integer cents and times in epoch seconds; `first_order` and
    `last_order` hold meaningless values where `orders` is 0.
    """

    orders: np.ndarray
    revenue: np.ndarray
    refunds: np.ndarray
    chargebacks: np.ndarray
    refund_count: np.ndarray
    chargeback_count: np.ndarray
    first_order: np.ndarray
    last_order: np.ndarray
    products: np.ndarray
    carts: np.ndarray
    abandoned: np.ndarray
    lifetime_value: np.ndarray
    order_frequency: np.ndarray
    is_abandoned: np.ndarray

    @property
    def numbers(self) -> dict[str, np.ndarray]:
        """The numeric list columns, by name."""
        return {
            "total_orders": self.orders,
            "total_revenue": self.revenue,
            "total_refunds": self.refunds,
            "total_chargebacks": self.chargebacks,
            "lifetime_value": self.lifetime_value,
            "order_frequency": self.order_frequency,
            "products_purchased": self.products,
            "is_abandoned_customer": self.is_abandoned,
            "abandoned_value": self.abandoned,
        }


def _totals(ds: Dataset, events: slice, starts: np.ndarray, instant: int) -> _Totals:
    """Aggregate the events in `events`, grouped at `starts`, as of `instant`.

    The list computes this for every customer at once and the details for one
    customer's slice, so both read the same numbers from the same code. Every
    group must hold at least one event, which every customer does.
    """
    when = ds.event_time[events]
    kind = ds.event_kind[events]
    cents = ds.event_cents[events]
    reversal = ds.reversal[events]
    reversed_by = ds.reversal_time[events] <= instant

    seen = when <= instant
    bought = seen & (kind == PURCHASE)
    carted = seen & (kind == ABANDONED)
    refunded = bought & (reversal == REFUND) & reversed_by
    charged = bought & (reversal == CHARGEBACK) & reversed_by

    def total(mask: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        summed = mask if values is None else np.where(mask, values, 0)
        return np.add.reduceat(summed.astype(np.int64), starts)

    orders, revenue = total(bought), total(bought, cents)
    refunds, chargebacks = total(refunded, cents), total(charged, cents)
    first_order = np.minimum.reduceat(np.where(bought, when, _NULL_LAST), starts)
    last_order = np.maximum.reduceat(np.where(bought, when, -1), starts)

    # Whole days between the first and last order dates, per gap, rounded down.
    days = last_order // DAY - first_order // DAY
    gaps = np.maximum(orders - 1, 1)
    frequency = np.where(orders >= 2, days // gaps, 0)
    carts = total(carted)
    return _Totals(
        orders=orders,
        revenue=revenue,
        refunds=refunds,
        chargebacks=chargebacks,
        refund_count=total(refunded),
        chargeback_count=total(charged),
        first_order=first_order,
        last_order=last_order,
        products=total(bought, ds.event_units[events]),
        carts=carts,
        abandoned=total(carted, cents),
        lifetime_value=revenue - refunds - chargebacks,
        order_frequency=frequency,
        is_abandoned=carts > 0,
    )


class _Snapshot:
    """What the list shows at one instant; sort orders are added on demand."""

    def __init__(self, ds: Dataset, instant: int, first_event: np.ndarray) -> None:
        self.instant = instant
        self.totals = _totals(ds, slice(None), ds.offsets[:-1], instant)
        exists = first_event <= instant
        buyer = self.totals.orders > 0
        self.members = {
            None: np.flatnonzero(exists),
            "customer": np.flatnonzero(buyer),
            "abandon": np.flatnonzero(exists & ~buyer),
        }
        self.counts = {
            "all": int(exists.sum()),
            "customers": int(buyer.sum()),
            "abandons": int((exists & ~buyer).sum()),
            "chargebacks": int((self.totals.chargeback_count > 0).sum()),
            "refunds": int((self.totals.refund_count > 0).sum()),
        }
        self.orders: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.searches: OrderedDict[tuple, np.ndarray] = OrderedDict()


def _remember(cache: OrderedDict, key: tuple, value, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _money(cents: int) -> float:
    return float(cents) / 100


def _utc(moment: datetime) -> datetime:
    """A plain aware UTC datetime; a naive one is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


class Store:
    """The dataset as of a movable instant, answering the customers API.

    Reads may come from several threads at once, also while another thread
    moves the clock; each call reads the clock once and answers for that
    instant. Lists see the world `visibility_delay` seconds late, as
    Elasticsearch shows new events late; details never lag.
    """

    SORTABLE_COLUMNS: tuple[str, ...] = COLUMNS

    def __init__(self, dataset: Dataset, as_of: datetime | None = None) -> None:
        self._ds = dataset
        self._as_of = _utc(as_of or DEFAULT_AS_OF)
        # One lock for the clock, so moving it never waits for a cache build,
        # and one for the caches, so no reader sees a half-built entry.
        self._clock_lock = threading.Lock()
        self._lock = threading.RLock()

        starts = dataset.offsets[:-1]
        self._first_event = np.minimum.reduceat(dataset.event_time, starts)
        # Every instant at which something a reader can see changes. Two
        # instants with as many changes at or before them see the same world.
        reversed_at = dataset.reversal_time[dataset.reversal != NO_REVERSAL]
        self._changes = np.unique(np.concatenate([dataset.event_time, reversed_at]))

        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._ranks: dict[str, np.ndarray] = {}
        self._matches: OrderedDict[str, np.ndarray] = OrderedDict()
        self._haystack: np.ndarray | None = None
        self._email_hashes: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def dataset(self) -> Dataset:
        """The dataset this store serves."""
        return self._ds

    # --- Clock ----------------------------------------------------------------

    @property
    def as_of(self) -> datetime:
        """The current instant, an aware UTC datetime."""
        return self._as_of

    def set_clock(self, as_of: datetime) -> None:
        """Move the clock to `as_of` (naive datetimes are taken as UTC)."""
        moment = _utc(as_of)
        with self._clock_lock:
            self._as_of = moment

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (backward when negative)."""
        with self._clock_lock:
            self._as_of = self._as_of + timedelta(seconds=seconds)

    def _instant(self, delay: float = 0.0) -> int:
        """The last whole second visible `delay` seconds before the clock."""
        if delay < 0:
            raise ValueError(f"`visibility_delay` must be >= 0, got {delay}")
        return math.floor(self._as_of.timestamp() - delay)

    # --- List and counts ------------------------------------------------------

    def list_customers(
        self,
        *,
        offset: int,
        limit: int,
        type: str | None = None,
        q: str | None = None,
        sort: str | None = None,
        sort_direction: str = "asc",
        columns: Sequence[str] | None = None,
        visibility_delay: float = 0.0,
    ) -> tuple[list[dict], int]:
        """One page of list rows, and how many rows match in all.

        Rows are `[offset, offset + limit)` of the matching customers in sort
        order. Without `sort` the order is `last_order_date` descending and
        `sort_direction` is ignored. Nulls sort last either way; ties keep
        the customers' internal order. Empty strings count as absent, and `q`
        is trimmed, as Laravel's request middleware does.
        """
        if offset < 0:
            raise ValidationError("offset", "The offset must be at least 0.")
        if limit < 0:
            raise ValidationError("limit", "The limit must be at least 0.")
        type, sort_direction = type or None, sort_direction or "asc"
        if type is not None and type not in TYPES:
            raise ValidationError("type", f"The selected type `{type}` is invalid.")
        if sort_direction not in SORT_DIRECTIONS:
            raise ValidationError(
                "sort_direction", f"The sort direction `{sort_direction}` is invalid."
            )
        if sort:
            if sort not in COLUMNS:
                raise ValidationError("sort", f"The sort column `{sort}` is invalid.")
            descending = sort_direction == "desc"
        else:
            sort, descending = DEFAULT_SORT, DEFAULT_SORT_DIRECTION == "desc"
        wanted = self._columns(columns)
        q = (q or "").strip() or None

        snapshot = self._snapshot(self._instant(visibility_delay))
        order = self._order(snapshot, sort, descending, type, q)
        page = order[offset : offset + limit]
        return self._rows(snapshot, page, wanted), len(order)

    def quick_access(self, visibility_delay: float = 0.0) -> dict:
        """Customer counts by type, as the list sees them."""
        snapshot = self._snapshot(self._instant(visibility_delay))
        return dict(snapshot.counts)

    @staticmethod
    def _columns(columns: Sequence[str] | None) -> tuple[str, ...]:
        """The columns to return, in canonical order whatever order was asked."""
        if not columns:
            return COLUMNS
        unknown = [column for column in columns if column not in COLUMNS]
        if unknown:
            raise ValidationError(
                "columns", f"The selected column `{unknown[0]}` is invalid."
            )
        return tuple(column for column in COLUMNS if column in columns)

    def _snapshot(self, instant: int) -> _Snapshot:
        changes_seen = int(np.searchsorted(self._changes, instant, side="right"))
        with self._lock:
            snapshot = self._snapshots.get(changes_seen)
            if snapshot is None:
                snapshot = _Snapshot(self._ds, instant, self._first_event)
            _remember(self._snapshots, changes_seen, snapshot, _MAX_SNAPSHOTS)
            return snapshot

    def _order(
        self,
        snapshot: _Snapshot,
        column: str,
        descending: bool,
        type: str | None,
        q: str | None,
    ) -> np.ndarray:
        """Internal indices of the matching customers in sort order (cached)."""
        key = (column, descending, type)
        with self._lock:
            order = snapshot.orders.get(key)
            if order is None:
                order = self._sorted(snapshot, column, descending, type)
            _remember(snapshot.orders, key, order, _MAX_SORT_ORDERS)
            if q is None:
                return order

            search_key = (*key, q)
            found = snapshot.searches.get(search_key)
            if found is None:
                found = order[self._match(q)[order]]
            _remember(snapshot.searches, search_key, found, _MAX_SEARCHES)
            return found

    def _sorted(
        self, snapshot: _Snapshot, column: str, descending: bool, type: str | None
    ) -> np.ndarray:
        members = snapshot.members[type]
        values, null = self._sort_values(snapshot, column)
        keys = values[members]
        if descending:
            keys = -keys
        if null is not None:
            keys = np.where(null[members], _NULL_LAST, keys)
        # A stable sort over members in index order breaks ties by index.
        return members[np.argsort(keys, kind="stable")].astype(np.int32)

    def _sort_values(
        self, snapshot: _Snapshot, column: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """An int64 sort key for every customer, and where it is null."""
        totals = snapshot.totals
        if column in _IDENTITY or column == "customer_name":
            return self._rank(column), None
        if column == "first_order_date":
            return totals.first_order, totals.orders == 0
        if column == "last_order_date":
            return totals.last_order, totals.orders == 0
        return totals.numbers[column].astype(np.int64), None

    def _rank(self, column: str) -> np.ndarray:
        """Each customer's place among the distinct values of a text column.

        Text sorts by code point, case-sensitive, as an Elasticsearch keyword
        field does.
        """
        rank = self._ranks.get(column)
        if rank is None:
            if column == "customer_name":
                text = self._names()
            else:
                text = getattr(self._ds, _IDENTITY[column])
            rank = np.unique(text, return_inverse=True)[1].astype(np.int64)
            self._ranks[column] = rank
        return rank

    def _names(self) -> np.ndarray:
        return self._ds.first_name + " " + self._ds.last_name

    def _match(self, q: str) -> np.ndarray:
        """Which customers hold `q` in their email, name or phone, any case."""
        needle = q.lower()
        found = self._matches.get(needle)
        if found is None:
            if self._haystack is None:
                ds = self._ds
                self._haystack = (
                    np.strings.lower(ds.email)
                    + "\x1f"
                    + np.strings.lower(self._names())
                    + "\x1f"
                    + ds.phone
                )
            if "\x1f" in needle:
                found = np.zeros(self._ds.n_customers, dtype=bool)
            else:
                found = np.strings.find(self._haystack, needle) >= 0
        _remember(self._matches, needle, found, _MAX_SEARCHES)
        return found

    def _rows(
        self, snapshot: _Snapshot, page: np.ndarray, columns: tuple[str, ...]
    ) -> list[dict]:
        """List rows for the customers in `page`, with only `columns`."""
        ds, totals = self._ds, snapshot.totals
        orders = totals.orders[page]
        numbers = totals.numbers

        def dates(values: np.ndarray) -> list[str | None]:
            return [
                _iso(value) if count else None
                for value, count in zip(
                    values[page].tolist(), orders.tolist(), strict=True
                )
            ]

        def column_values(column: str) -> list:
            if column in _IDENTITY:
                return getattr(ds, _IDENTITY[column])[page].tolist()
            if column == "customer_name":
                return self._names_at(page)
            if column == "first_order_date":
                return dates(totals.first_order)
            if column == "last_order_date":
                return dates(totals.last_order)
            values = numbers[column][page].tolist()
            if column in _MONEY:
                return [_money(cents) for cents in values]
            return values

        values = [column_values(column) for column in columns]
        return [
            dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)
        ]

    def _names_at(self, page: np.ndarray) -> list[str]:
        firsts = self._ds.first_name[page].tolist()
        lasts = self._ds.last_name[page].tolist()
        return [f"{first} {last}" for first, last in zip(firsts, lasts, strict=True)]

    # --- Details ----------------------------------------------------------------

    def details(
        self,
        email: str,
        include_orders: bool = True,
        include_subscriptions: bool = True,
    ) -> dict | None:
        """A customer's profile, totals, orders and subscriptions, or None.

        `email` must match the served email exactly. None means no customer
        with that email exists at the clock's instant. Details never lag.
        """
        index = self._find(email)
        instant = self._instant()
        if index is None or self._first_event[index] > instant:
            return None

        ds = self._ds
        events = slice(int(ds.offsets[index]), int(ds.offsets[index + 1]))
        totals = _totals(ds, events, np.zeros(1, dtype=np.int64), instant)
        count, revenue = int(totals.orders[0]), int(totals.revenue[0])
        # Average in cents, rounded half up.
        average = (2 * revenue + count) // (2 * count) if count else 0
        first_order = _iso(int(totals.first_order[0])) if count else None
        last_order = _iso(int(totals.last_order[0])) if count else None
        return {
            "customer": {
                "email": str(ds.email[index]),
                "name": self._names_at(np.array([index]))[0],
                "phone": str(ds.phone[index]),
                "country": str(ds.country[index]),
                "state": str(ds.state[index]),
                "city": str(ds.city[index]),
                "address": str(ds.address[index]),
            },
            "stats": {
                "total_orders": count,
                "total_revenue": _money(revenue),
                "total_refunds": _money(totals.refunds[0]),
                "total_chargebacks": _money(totals.chargebacks[0]),
                "lifetime_value": _money(totals.lifetime_value[0]),
                "first_order_date": first_order,
                "last_order_date": last_order,
                "average_order_value": _money(average),
            },
            "orders": self._orders(events, instant) if include_orders else [],
            "subscriptions": (
                self._subscriptions(index, events, totals, instant)
                if include_subscriptions
                else []
            ),
        }

    def _orders(self, events: slice, instant: int) -> list[dict]:
        """Purchase orders and abandoned carts visible at `instant`, newest first."""
        ds = self._ds
        visible = events.start + np.flatnonzero(ds.event_time[events] <= instant)
        orders = []
        for event in visible[::-1].tolist():
            if ds.event_kind[event] == ABANDONED:
                status = "abandoned"
            elif ds.reversal_time[event] <= instant:
                status = _STATUSES[int(ds.reversal[event])]
            else:
                status = _STATUSES[NO_REVERSAL]
            orders.append(
                {
                    "id": ds.order_id(event),
                    "date": _iso(int(ds.event_time[event])),
                    "total": _money(ds.event_cents[event]),
                    "products": ds.products(event),
                    "status": status,
                }
            )
        return orders

    def _subscriptions(
        self, index: int, events: slice, totals: _Totals, instant: int
    ) -> list[dict]:
        """Subscriptions created by `instant`, with status from list-visible data.

        A subscription is cancelled once any refund or chargeback of the
        customer happens at or after its creation; while active it next
        charges 30 days after the date of the customer's last order.
        """
        ds = self._ds
        reversed_at = ds.reversal_time[events]
        reversed_at = reversed_at[
            (ds.reversal[events] != NO_REVERSAL) & (reversed_at <= instant)
        ]
        last_order_day = int(totals.last_order[0]) // DAY
        next_charge = _EPOCH + timedelta(
            days=last_order_day + SUBSCRIPTION_INTERVAL_DAYS
        )

        subscriptions = []
        start = int(ds.subscription_offsets[index])
        end = int(ds.subscription_offsets[index + 1])
        for sub in range(start, end):
            created = int(ds.subscription_time[sub])
            if created > instant:
                continue
            active = not np.any(reversed_at >= created)
            subscriptions.append(
                {
                    "id": int(ds.subscription_id[sub]),
                    "status": "active" if active else "cancelled",
                    "product": SUBSCRIPTION_PRODUCTS[ds.subscription_product[sub]],
                    "next_charge_date": next_charge.isoformat() if active else None,
                }
            )
        return subscriptions

    def _find(self, email: str) -> int | None:
        """The internal index of the customer with exactly this email, if any."""
        if not isinstance(email, str):
            return None
        with self._lock:
            if self._email_hashes is None:
                hashes = np.fromiter(
                    map(hash, self._ds.email.tolist()),
                    dtype=np.int64,
                    count=self._ds.n_customers,
                )
                order = np.argsort(hashes)
                self._email_hashes = (hashes[order], order)
        hashes, order = self._email_hashes
        wanted = hash(email)
        start = int(np.searchsorted(hashes, wanted, side="left"))
        end = int(np.searchsorted(hashes, wanted, side="right"))
        for index in order[start:end].tolist():
            if self._ds.email[index] == email:
                return index
        return None

    # --- For tests ----------------------------------------------------------

    def emails(self) -> list[str]:
        """Every customer's email visible at the clock's instant, by index."""
        visible = self._first_event <= self._instant()
        return self._ds.email[visible].tolist()
