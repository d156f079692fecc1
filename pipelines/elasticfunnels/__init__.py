"""The `elasticfunnels` dlt source: customers, their details, quick-access counts.

`customers` pages the list route and yields only the rows that changed since
the last sync; `details` is a transformer over those rows, so unchanged
customers never cost a details call. Orders (with their products) and
subscriptions become dlt's child tables of `details`.

Two scans feed `customers`:

- incremental: sorted by `last_order_date` descending, it stops at the first
  page that reaches a row older than the cursor minus the lookback. Customers who buy
  during the scan move to the front, behind the scan, but their new date lies
  past the cursor it stores, so the next run finds them.
- reconcile (`full`): sorted by email, which no purchase changes, it reads the
  whole list, checks that it saw as many customers as the API counted when
  it started, and marks the stored customers it did not see as deleted. It
  is also the only scan that reaches leads (their null dates sort last) and
  refunds or chargebacks on old orders (they do not move `last_order_date`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import dlt
import httpx
import numpy as np
from dlt.common.exceptions import PipelineStateNotAvailable
from dlt.sources import DltResource

from pipelines.elasticfunnels import settings
from pipelines.elasticfunnels.client import ApiClient, RequestStats
from pipelines.elasticfunnels.exceptions import (
    ApiError,
    ConfigurationError,
    ResultWindowExceeded,
    UnreadableAnswer,
)
from pipelines.elasticfunnels.records import (
    BadRecord,
    customer_record,
    details_record,
    email_key,
    excerpt,
    required_email,
    to_timestamp,
)

logger = logging.getLogger("efw.source")

QUARANTINE_HINTS = dlt.mark.make_hints(
    table_name="quarantine",
    write_disposition="append",
    columns=settings.QUARANTINE_COLUMNS,
)


@dataclass
class Known:
    """What the warehouse already holds about one customer."""

    row_hash: str | None
    details_hash: str | None
    deleted: bool


class KnownCustomers(Protocol):
    """Read access to the loaded `customers` table, for change detection."""

    def lookup(self, keys: list[str]) -> dict[str, Known]: ...

    def active_keys(self) -> Iterator[list[str]]: ...

    def rows(self, keys: list[str]) -> list[dict[str, Any]]: ...


class NothingKnown:
    """An empty warehouse: every customer is new."""

    def lookup(self, keys: list[str]) -> dict[str, Known]:
        return {}

    def active_keys(self) -> Iterator[list[str]]:
        return iter(())

    def rows(self, keys: list[str]) -> list[dict[str, Any]]:
        return []


@dataclass
class SyncRun:
    """One run's clock, counters and progress hooks, shared with the caller."""

    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    mode: str = "incremental"
    # Customers the API lists, when the scan reads them all (for an ETA).
    expected: int = 0
    pages: int = 0
    listed: int = 0
    new: int = 0
    changed: int = 0
    deleted: int = 0
    details_queued: int = 0
    details_fetched: int = 0
    details_missing: int = 0
    quarantined: int = 0
    duplicates: int = 0
    rescans: int = 0
    on_progress: Any = None
    http: RequestStats | None = None
    _closers: list[Any] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self) -> None:
        """Releases the run's HTTP client and threads; call after extract."""
        while self._closers:
            self._closers.pop()()

    def bump(self, name: str, by: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + by)
        if self.on_progress is not None:
            self.on_progress(self)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest())


class Hashes64:
    """A set of 64-bit hashes in about 8 bytes each, not the ~70 of a Python
    set of ints: a reconcile notes two for every customer, so at a million
    customers the difference is most of what the scan holds.

    New hashes wait in a small set and are merged into a sorted array in
    batches; a lookup checks both.
    """

    BATCH = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.empty(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __contains__(self, value: int) -> bool:
        if value in self._recent:
            return True
        at = int(np.searchsorted(self._sorted, np.uint64(value)))
        return at < len(self._sorted) and int(self._sorted[at]) == value

    def add(self, value: int) -> None:
        self._recent.add(value)
        if len(self._recent) >= self.BATCH:
            recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
            self._sorted = np.union1d(self._sorted, recent)
            self._recent.clear()


def _check_number(
    name: str, value: Any, zero_means: str | None, at_most: float | None
) -> None:
    """Refuses a numeric setting that is not a finite number of 0 or more
    (more than 0 where `zero_means` is None; else what 0 stands for), or
    past `at_most`, where dates and timers stop making sense."""
    number = float(value)
    if zero_means is None:
        fits, allowed = number > 0, "more than 0"
    else:
        fits = number >= 0
        allowed = f"0 ({zero_means}) or more" if zero_means else "0 or more"
    if at_most is not None:
        fits = fits and number <= at_most
        allowed += f" and at most {at_most:,}"
    if not (math.isfinite(number) and fits):
        raise ConfigurationError(
            f"`{name}` is {value!r}; it must be {allowed}. Fix it under "
            f"[sources.elasticfunnels] or SOURCES__ELASTICFUNNELS__{name.upper()}."
        )


def _one_brand(brand: str) -> None:
    """A warehouse holds one brand: the first sync records which, and a sync
    for another is refused before it sends a request or merges a row."""
    try:
        held = dlt.current.source_state().get("brand")
    except PipelineStateNotAvailable:
        return  # the source used outside a pipeline
    refuse_another_brand(held, brand)


def refuse_another_brand(held: Any, brand: Any, where: str = "") -> None:
    """Raises unless `brand` (as configured) is the brand `held` (recorded
    in the warehouse, or in dlt's working folder `where` names)."""
    brand = str(brand or "").strip()
    if held is not None and brand and held != brand:
        raise ConfigurationError(
            f"This warehouse{where} holds brand `{held}`, and the settings ask for "
            f"brand `{brand}`; syncing it here would mix two brands' customers. "
            "Give each brand its own warehouse (--warehouse PATH.duckdb or "
            "EFW__WAREHOUSE), or fix `brand` under [sources.elasticfunnels] "
            "(SOURCES__ELASTICFUNNELS__BRAND)."
        )


def quarantine(
    run: SyncRun,
    resource: str,
    kind: str,
    reason: str | BadRecord,
    row: Any,
    key: str | None,
) -> Any:
    """A row for the `quarantine` table: what could not load, and why. The
    log line leaves out the value a bad record holds, which may be a name."""
    run.bump("quarantined")
    logged = reason.reason if isinstance(reason, BadRecord) else reason
    logger.warning("quarantined a %s row: %s", resource, logged)
    item = {
        "found_at": run.started_at,
        "resource": resource,
        "kind": kind,
        "email_key": key,
        "reason": str(reason),
        "record": excerpt(row, 2000),
    }
    return dlt.mark.with_hints(item, QUARANTINE_HINTS, create_table_variant=True)


@dlt.source(name="elasticfunnels", max_table_nesting=2)
def elasticfunnels(
    base_url: str = settings.DEFAULT_BASE_URL,
    brand: str = dlt.config.value,
    access_key: str = dlt.secrets.value,
    per_page: int = settings.DEFAULT_PER_PAGE,
    lookback_days: float = settings.DEFAULT_LOOKBACK_DAYS,
    reconcile_every_days: float = settings.DEFAULT_RECONCILE_EVERY_DAYS,
    concurrency: int = settings.DEFAULT_CONCURRENCY,
    max_requests_per_second: float = 0.0,
    timeout_seconds: float = settings.DEFAULT_TIMEOUT_SECONDS,
    retry_budget_seconds: float = settings.DEFAULT_RETRY_BUDGET_SECONDS,
    retry_floor_seconds: float = settings.DEFAULT_RETRY_FLOOR_SECONDS,
    max_result_window: int = settings.DEFAULT_MAX_RESULT_WINDOW,
    full: bool = False,
    known: KnownCustomers | None = None,
    run: SyncRun | None = None,
    transport: httpx.BaseTransport | None = None,
    demo: bool = False,
) -> Iterable[DltResource]:
    """Customers of one ElasticFunnels brand, their details and counts.

    `known` lets the source skip customers the warehouse already holds
    unchanged; without it every listed customer is loaded with details.
    `demo` records in the state that `efw demo` made the warehouse, which
    the next demo may then delete; any other sync records that it may not.
    """
    if not 1 <= int(per_page) <= settings.MAX_PER_PAGE:
        raise ConfigurationError(
            f"`per_page` is {per_page}; the API serves 1 to 100 rows a page. "
            "Fix it under [sources.elasticfunnels] or "
            "SOURCES__ELASTICFUNNELS__PER_PAGE."
        )
    ten_years, a_day, a_week = 3650, 86_400, 7 * 86_400
    for name, value, zero_means, at_most in (
        ("lookback_days", lookback_days, "", ten_years),
        ("reconcile_every_days", reconcile_every_days, "", ten_years),
        ("max_requests_per_second", max_requests_per_second, "no cap", None),
        ("timeout_seconds", timeout_seconds, None, a_day),
        ("retry_budget_seconds", retry_budget_seconds, "", a_week),
        ("retry_floor_seconds", retry_floor_seconds, "", a_day),
        ("max_result_window", max_result_window, "no limit", None),
    ):
        _check_number(name, value, zero_means, at_most)
    run = run or SyncRun()
    client = ApiClient(
        base_url,
        brand,
        access_key,
        concurrency=int(concurrency),
        max_requests_per_second=float(max_requests_per_second or 0) or None,
        timeout=float(timeout_seconds),
        retry_budget=float(retry_budget_seconds),
        retry_floor=float(retry_floor_seconds),
        transport=transport,
    )
    try:
        _one_brand(client.brand)
    except ConfigurationError:
        client.close()
        raise
    scanner = CustomerScan(
        client,
        run,
        known or NothingKnown(),
        per_page=int(per_page),
        lookback=timedelta(days=float(lookback_days)),
        reconcile_every=timedelta(days=float(reconcile_every_days)),
        window=int(max_result_window),
        full=bool(full),
    )
    # Twice as many threads as requests allowed in flight (the client's slots
    # bound those): while one thread decodes an answer, another is already
    # waiting for the slot it frees, so no slot idles between requests.
    pool = ThreadPoolExecutor(
        max_workers=2 * int(concurrency), thread_name_prefix="efw"
    )
    run.http = client.stats
    run._closers += [client.close, pool.shutdown]

    @dlt.resource(
        name="customers",
        primary_key="email_key",
        write_disposition="merge",
        columns=settings.CUSTOMER_COLUMNS,
    )
    def customers() -> Iterator[Any]:
        dlt.current.source_state().setdefault("brand", client.brand)
        dlt.current.source_state()["demo"] = bool(demo)
        yield from scanner.scan(dlt.current.resource_state())

    @dlt.transformer(
        name="details",
        primary_key="email_key",
        write_disposition="merge",
        columns=settings.DETAIL_COLUMNS,
        nested_hints={
            "orders": {"columns": settings.ORDER_COLUMNS},
            ("orders", "products"): {"columns": settings.PRODUCT_COLUMNS},
            "subscriptions": {"columns": settings.SUBSCRIPTION_COLUMNS},
        },
        parallelized=True,
    )
    def details(batch: Any) -> Iterator[Any]:
        # Deleted customers keep the details they had; quarantined rows have
        # no hash and nothing to fetch.
        batch = batch if isinstance(batch, list) else [batch]
        rows = [r for r in batch if "row_hash" in r and r.get("deleted_at") is None]
        run.bump("details_queued", len(rows))
        records = []
        for row, body in zip(rows, pool.map(_fetch_details, rows), strict=True):
            run.bump("details_fetched")
            key = row["email_key"]
            if isinstance(body, UnreadableAnswer):
                yield quarantine(
                    run,
                    "details",
                    "unreadable",
                    f"{body} Retried on the next sync that lists this customer.",
                    None,
                    key,
                )
                continue
            if body is None:
                run.bump("details_missing")
                yield quarantine(
                    run,
                    "details",
                    "not_found",
                    "the list has this customer but details answered 404; "
                    "retried on the next sync that lists them",
                    None,
                    key,
                )
                continue
            try:
                record = details_record(key, body, row["row_hash"])
            except BadRecord as exc:
                yield quarantine(run, "details", "bad_row", exc, body, key)
                continue
            record["synced_at"] = run.started_at
            records.append(record)
        if records:
            yield records

    def _fetch_details(row: dict[str, Any]) -> Any:
        try:
            return client.details(row["customer_email"])
        except UnreadableAnswer as exc:
            return exc

    @dlt.resource(
        name="quick_access",
        write_disposition="append",
        columns=settings.QUICK_ACCESS_COLUMNS,
    )
    def quick_access() -> Iterator[dict[str, Any]]:
        counts = client.quick_access()
        row = {"run_at": run.started_at}
        for name, column in (
            ("all", "all_customers"),
            ("customers", "customers"),
            ("abandons", "abandons"),
            ("chargebacks", "chargebacks"),
            ("refunds", "refunds"),
        ):
            value = counts.get(name)
            row[column] = value if isinstance(value, int) else None
        yield row

    return customers, customers | details, quick_access


@dataclass
class Partition:
    """One query the list route answers: a type filter and an ordering."""

    type: str | None
    sort: str
    direction: str
    q: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "sort": self.sort,
            "direction": self.direction,
            "type": self.type,
            "q": self.q,
        }


class CustomerScan:
    """Pages the list route and yields the customers that changed."""

    def __init__(
        self,
        client: ApiClient,
        run: SyncRun,
        known: KnownCustomers,
        *,
        per_page: int,
        lookback: timedelta,
        reconcile_every: timedelta,
        window: int,
        full: bool,
    ) -> None:
        self.client = client
        self.run = run
        self.known = known
        self.per_page = per_page
        self.lookback = lookback
        self.reconcile_every = reconcile_every
        self.window = window
        self.full = full
        # Hashes of the keys and of the exact emails seen this run: a repeat
        # of both is page drift; a repeat of the key alone is a collision.
        self.seen = Hashes64()
        self.distinct = 0
        # Quarantined list rows whose email could not be read.
        self.unnamed = 0
        self.newest: datetime | None = None
        # Email domains of the customers seen, to split a scan past the window.
        self.domains: Counter[str] = Counter()

    # Planning.

    def scan(self, state: dict[str, Any]) -> Iterator[Any]:
        cursor = _parse(state.get("last_order_date"))
        last_reconcile = _parse(state.get("last_reconcile_at"))
        due = (
            last_reconcile is None
            or self.run.started_at - last_reconcile >= self.reconcile_every
        )
        if self.full or cursor is None or due:
            self.run.mode = "full"
            yield from self._reconcile()
            state["last_reconcile_at"] = self.run.started_at.isoformat()
        else:
            yield from self._incremental(cursor - self.lookback)
        if self.run.mode == "full" and self.newest is not None:
            # What the whole list shows now, even if older than the cursor:
            # the customer who held the newest date may be gone, or the
            # API's clock was set back. A cursor left ahead of the list
            # would end every incremental on its first page.
            newest = self.newest
        else:
            newest = max(filter(None, (cursor, self.newest)), default=None)
        if newest is not None:
            # An order dated in the future (a bad row, a skewed clock) would
            # otherwise hold the cursor there and end every incremental on
            # its first page; a cursor too early only reads more.
            newest = min(newest, self.run.started_at)
            state["last_order_date"] = newest.isoformat()

    def _incremental(self, start: datetime) -> Iterator[Any]:
        logger.info("incremental scan from %s", start.isoformat())
        order = Partition(None, "last_order_date", "desc")
        for page in range(1, 1_000_000):
            if self._past_window(page):
                # More changed than one query can show: read everything.
                logger.info("incremental scan reached the result window")
                self.run.mode = "full"
                yield from self._reconcile()
                return
            body = self.client.list_page(page, self.per_page, **order.params())
            records = yield from self._take(body)
            # The list is newest first with nulls last, so the first row older
            # than the start means every later row is older too.
            dates = [r["last_order_date"] for r in records]
            if not body["data"] or any(d is None or d < start for d in dates):
                return
            if page >= _last_page(body):
                return

    # The reconcile scan.

    def _reconcile(self) -> Iterator[Any]:
        logger.info("full scan of the customer list")
        # Rows read late in the scan show orders placed during it, while rows
        # read early do not show theirs: the newest date seen overall would
        # put the cursor past those. The newest date at the start is safe.
        horizon = self._newest_listed()
        for _attempt in range(3):
            expected = yield from self._scan_everything()
            if self.distinct >= expected:
                break
            # Someone left the list at a spot the scan had passed, or the
            # list shrank and grew: read it again rather than guess.
            self.run.bump("rescans")
            logger.warning(
                "saw %d customers of %d listed; scanning again", self.distinct, expected
            )
        else:
            raise ApiError(
                f"The customer list changed under three scans in a row: "
                f"{self.distinct} distinct customers seen, {expected} listed. "
                "Nothing from this run was loaded and the cursor did not move; "
                "rerun `efw sync --full` later. If every run stops here with "
                "the same figures, the API counts rows it never lists (a "
                "customer record stored twice): report the figures to "
                "ElasticFunnels support."
            )
        self.newest = horizon
        yield from self._mark_deleted()

    def _newest_listed(self) -> datetime | None:
        """The newest `last_order_date` the list shows now, None without one."""
        body = self.client.list_page(
            1, 5, **Partition(None, "last_order_date", "desc").params()
        )
        dates = []
        for row in body["data"]:
            try:
                dates.append(to_timestamp("last_order_date", row["last_order_date"]))
            except (BadRecord, KeyError, TypeError):
                continue
        return max(filter(None, dates), default=None)

    def _scan_everything(self) -> Iterator[Any]:
        """Reads every customer, split into queries the window allows."""
        first = self.client.list_page(
            1, self.per_page, **Partition(None, "customer_email", "asc").params()
        )
        total = _total(first)
        self.run.expected = total
        if not self.window or total <= self.window:
            yield from self._scan(Partition(None, "customer_email", "asc"), first)
        else:
            for type_ in ("customer", "abandon"):
                yield from self._scan_type(type_)
        # Against the count when the scan started. A customer who arrived
        # since was not there to be missed (a row inserted behind the scan
        # only pushes the next ones down: one is read twice). One who left
        # pulls the next row up past the scan, and a lead who buys between
        # the two type scans is in neither: the count catches both.
        return total

    def _scan_type(self, type_: str) -> Iterator[Any]:
        """Reads every customer of one type, when there are more than the
        window shows: both ends of the email order first (2 x the window),
        then the middle of each email domain seen (`q=@domain`), largest
        first; then whole domains and both ends of other orderings; fails if
        customers stay unseen."""
        before = self.distinct
        self.domains.clear()
        total = 0
        # Per domain, how many of its customers each end of the order showed.
        ends: dict[str, Counter[str]] = {}

        def reached() -> int:
            return self.distinct - before

        for direction in ("asc", "desc"):
            seen_before = Counter(self.domains)
            total = yield from self._scan(Partition(type_, "customer_email", direction))
            ends[direction] = self.domains - seen_before
            if reached() >= total:
                return total
        # A domain's emails in email order are a run of the whole order: the
        # first `low` were on the front pages, the last `high` on the back
        # ones, so only the pages between hold customers not yet seen. If
        # customers arrived or left meanwhile and shifted them, read whole
        # domains, then other orderings.
        for targeted in (True, False):
            for domain, _ in self.domains.most_common():
                low = ends["asc"][domain] if targeted else 0
                high = ends["desc"][domain] if targeted else 0
                for direction, skip, keep in (("asc", low, high), ("desc", high, low)):
                    part = Partition(type_, "customer_email", direction, f"@{domain}")
                    part_total = yield from self._scan(part, skip=skip, keep=keep)
                    if reached() >= total or part_total <= self.window:
                        break
                if reached() >= total:
                    return total
        for column in ("customer_phone", "customer_name", "last_order_date"):
            for direction in ("asc", "desc"):
                yield from self._scan(Partition(type_, column, direction))
                if reached() >= total:
                    return total
        raise ResultWindowExceeded(
            f"The API serves at most {self.window:,} results per query "
            f"(Elasticsearch's result window) and {total - reached():,} of the "
            f"{total:,} customers of type `{type_}` could not be reached through "
            "the orderings and searches it offers. Nothing from this run was "
            "loaded. Ask ElasticFunnels to raise the window, or set "
            "`max_result_window` under [sources.elasticfunnels] if they did."
        )

    def _scan(
        self,
        order: Partition,
        first: dict[str, Any] | None = None,
        *,
        skip: int = 0,
        keep: int = 0,
    ) -> Iterator[Any]:
        """Pages one ordering to its end or to the window; returns how many
        customers it listed from start to end at most: the smaller of the
        totals its first and last pages reported.

        `skip` and `keep` leave out rows already seen: about `skip` at the
        start and `keep` at the end. A page more is read on each side, so
        a few customers arriving or leaving meanwhile are still covered.

        Customers arriving or leaving while it pages (new conversions, leads
        who buy) change the total; counting them would send a type scan on
        to every other ordering and fail it for customers who were not there.
        """
        page = max(1, skip // self.per_page)
        body = first or self.client.list_page(page, self.per_page, **order.params())
        first_total = _total(body)
        # The list may grow while it is paged: its last page is the latest one.
        stop = math.ceil((first_total - keep) / self.per_page) + 1 if keep else None
        while True:
            yield from self._take(body)
            if not body["data"] or page >= _last_page(body):
                break
            if stop is not None and page >= stop:
                break
            page += 1
            if self._past_window(page):
                break
            body = self.client.list_page(page, self.per_page, **order.params())
        return min(first_total, _total(body))

    def _mark_deleted(self) -> Iterator[Any]:
        if self.unnamed:
            # Any unseen customer could be one of those rows.
            logger.warning(
                "%d listed rows had no usable email; no customer is marked "
                "deleted until a reconcile reads every row",
                self.unnamed,
            )
            return
        for keys in self.known.active_keys():
            gone = [k for k in keys if _hash64(k) not in self.seen]
            if not gone:
                continue
            rows = self.known.rows(gone)
            for row in rows:
                row["deleted_at"] = self.run.started_at
                row["synced_at"] = self.run.started_at
            self.run.bump("deleted", len(rows))
            yield rows

    # Pages.

    def _past_window(self, page: int) -> bool:
        return bool(self.window) and page * self.per_page > self.window

    def _take(self, body: dict[str, Any]) -> Iterator[Any]:
        """Validates one page, yields its changed rows; returns its records."""
        self.run.bump("pages")
        records: list[dict[str, Any]] = []
        for row in body["data"]:
            try:
                record = customer_record(row)
            except BadRecord as exc:
                # A bad row still occupies a place in the list: count it once,
                # so the completeness check does not see a gap. When its email
                # is readable, the customer counts as seen and keeps the row
                # loaded before instead of being marked deleted.
                key = _readable_key(row)
                row_hash = _hash64(key if key else "\1" + excerpt(row, 4000))
                if row_hash not in self.seen:
                    self.seen.add(row_hash)
                    self.distinct += 1
                    self.unnamed += key is None
                    yield quarantine(self.run, "customers", "bad_row", exc, row, key)
                continue
            key_hash = _hash64(record["email_key"])
            email_hash = _hash64("\0" + record["customer_email"])
            if key_hash in self.seen:
                if email_hash not in self.seen:
                    # Another customer as far as the API is concerned, who
                    # counts in its `total`: this row's place in the list is
                    # seen, and a repeat of it is page drift.
                    self.seen.add(email_hash)
                    self.distinct += 1
                    self.run.bump("duplicates")
                    yield quarantine(
                        self.run,
                        "customers",
                        "duplicate_key",
                        "another email in this sync differs from this one only "
                        "in case or spaces; the first one seen was kept",
                        row,
                        record["email_key"],
                    )
                continue
            self.seen.add(key_hash)
            self.seen.add(email_hash)
            self.distinct += 1
            self.domains[record["email_key"].rpartition("@")[2]] += 1
            records.append(record)
            date = record["last_order_date"]
            if date is not None and (self.newest is None or date > self.newest):
                self.newest = date
        self.run.bump("listed", len(records))

        changed = self._changed(records)
        if changed:
            yield changed
        return records

    def _changed(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        known = self.known.lookup([r["email_key"] for r in records])
        changed = []
        for record in records:
            before = known.get(record["email_key"])
            if before is None:
                self.run.bump("new")
            elif (
                before.deleted
                or before.row_hash != record["row_hash"]
                or before.details_hash != record["row_hash"]
            ):
                self.run.bump("changed")
            else:
                continue
            record["synced_at"] = self.run.started_at
            record["deleted_at"] = None
            changed.append(record)
        return changed


def _readable_key(row: Any) -> str | None:
    """The `email_key` of a list row that failed its checks, if it has one."""
    if not isinstance(row, dict):
        return None
    try:
        return email_key(required_email("customer_email", row.get("customer_email")))
    except BadRecord:
        return None


def _parse(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _total(body: dict[str, Any]) -> int:
    total = body.get("total")
    if isinstance(total, int) and total >= 0:
        return total
    raise ApiError(
        f"The customer list answered without a usable `total` ({total!r}); "
        "efw needs it to know the scan saw every customer."
    )


def _last_page(body: dict[str, Any]) -> int:
    last = body.get("last_page")
    if isinstance(last, int) and last >= 1:
        return last
    per_page = body.get("per_page") or 1
    return max(1, math.ceil(_total(body) / per_page))
