"""The emulator's dataset and store: invariants over the whole CDNOW world.

The CDNOW dataset is built once per module; every assertion compares real
values, most of them against the raw file or the dataset's own arrays.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from pipelines.emulator import data
from pipelines.emulator.store import COLUMNS, DEFAULT_AS_OF, Store, ValidationError

RAW_FILE = Path(data.__file__).parent / "data" / "cdnow_master.txt.gz"
MID_1997 = datetime(1997, 6, 15, 12, 0, tzinfo=UTC)
CDNOW_BUYERS = 23_570
CDNOW_ORDERS = 69_659


def cents(amount: float) -> int:
    return round(amount * 100)


def all_rows(store: Store, **options) -> list[dict]:
    """Every list row in one call (the store takes any limit)."""
    _, total = store.list_customers(offset=0, limit=0, **options)
    rows, again = store.list_customers(offset=0, limit=total, **options)
    assert again == total == len(rows)
    return rows


@pytest.fixture(scope="module")
def raw() -> list[tuple[int, str, int, Decimal]]:
    """The shipped CDNOW file: customer id, date, CDs and dollars per row."""
    with gzip.open(RAW_FILE, "rt") as stream:
        lines = stream.read().splitlines()[1:]
    rows = []
    for line in lines:
        customer, day, units, dollars = line.split()
        rows.append((int(customer), day, int(units), Decimal(dollars)))
    return rows


@pytest.fixture(scope="module")
def cdnow() -> data.Dataset:
    return data.load_cdnow()


@pytest.fixture(scope="module")
def small_synthetic() -> data.Dataset:
    return data.synthetic(25_000)


@pytest.fixture(scope="module", params=["cdnow-now", "cdnow-mid-1997", "synthetic-now"])
def store(request, cdnow, small_synthetic) -> Store:
    """A store over each world worth checking the invariants of."""
    if request.param == "cdnow-now":
        return Store(cdnow)
    if request.param == "cdnow-mid-1997":
        return Store(cdnow, as_of=MID_1997)
    return Store(small_synthetic)


@pytest.fixture(scope="module")
def details_by_email(store) -> dict[str, dict]:
    return {email: store.details(email) for email in store.emails()}


# --- The raw data survives ---------------------------------------------------------


def test_cdnow_buyers_orders_and_revenue_match_the_raw_file(raw, cdnow):
    store = Store(cdnow)
    rows = all_rows(store, type="customer")

    assert len(rows) == CDNOW_BUYERS == len({row[0] for row in raw})
    assert sum(row["total_orders"] for row in rows) == CDNOW_ORDERS == len(raw)
    raw_cents = int(sum(row[3] for row in raw) * 100)
    assert raw_cents == 250_031_563
    assert sum(cents(row["total_revenue"]) for row in rows) == raw_cents
    assert sum(row["products_purchased"] for row in rows) == sum(r[2] for r in raw)


def test_each_cdnow_row_is_one_order_on_its_date(raw, cdnow):
    purchase = cdnow.event_kind == data.PURCHASE
    times = cdnow.event_time[purchase]
    ours = sorted(
        zip(
            cdnow.customer_id[cdnow.event_customer[purchase]].tolist(),
            [day.strftime("%Y%m%d") for day in _utc_dates(times)],
            cdnow.event_units[purchase].tolist(),
            cdnow.event_cents[purchase].tolist(),
            strict=True,
        )
    )
    theirs = sorted((c, d, u, int(v * 100)) for c, d, u, v in raw)
    assert ours == theirs
    # A time of day before 23:00 keeps the UTC date whatever the rounding.
    assert (times % data.DAY).max() < 23 * 3600


def test_trimmed_cdnow_keeps_the_same_customers_and_orders(cdnow):
    small = data.load_cdnow(max_customers=500)
    buyers = small.customer_id[small.customer_id <= 500]

    assert buyers.tolist() == list(range(1, 501))
    assert small.n_customers == 500 + 50
    for customer_id in (1, 77, 500):
        full_at = int(np.searchsorted(cdnow.customer_id, customer_id))
        small_at = int(np.searchsorted(small.customer_id, customer_id))
        assert small.email[small_at] == cdnow.email[full_at]
        full = Store(cdnow).details(str(cdnow.email[full_at]))
        assert Store(small).details(str(small.email[small_at])) == full


def test_datasets_are_deterministic_per_seed(cdnow):
    again = data.load_cdnow()
    other = data.load_cdnow(seed=1)

    assert np.array_equal(again.email, cdnow.email)
    assert np.array_equal(again.event_key, cdnow.event_key)
    assert np.array_equal(again.reversal_time, cdnow.reversal_time)
    assert not np.array_equal(other.email, cdnow.email)
    assert not np.array_equal(other.reversal, cdnow.reversal)


# --- Identities --------------------------------------------------------------------


EMAIL_SHAPES = {
    "plus tag": lambda local: "+" in local,
    "mixed case": lambda local: local != local.lower(),
    "dots": lambda local: "." in local,
    "apostrophe": lambda local: "'" in local,
    "non-ascii": lambda local: not local.isascii(),
    "slash": lambda local: "/" in local,
    "percent": lambda local: "%" in local,
}


@pytest.mark.parametrize("world", ["cdnow", "small_synthetic"])
def test_emails_are_unique_and_come_in_real_shapes(world, request):
    dataset = request.getfixturevalue(world)
    emails = dataset.email.tolist()
    locals_ = [email.rsplit("@", 1)[0] for email in emails]

    assert len({email.strip().lower() for email in emails}) == len(emails)
    for shape, test in EMAIL_SHAPES.items():
        share = sum(map(test, locals_)) / len(emails)
        assert 0.01 <= share <= 0.05, shape
    plain = [local for local in locals_ if re.fullmatch(r"[a-z]+\d+", local)]
    assert len(plain) / len(emails) > 0.8
    assert any(local.startswith("o'neil") for local in locals_)

    names = [
        f"{first} {last}"
        for first, last in zip(
            dataset.first_name.tolist(), dataset.last_name.tolist(), strict=True
        )
    ]
    assert 0.02 < sum(not name.isascii() for name in names) / len(names) < 0.3
    countries = Counter(dataset.country.tolist())
    assert set(countries) == {"US", "CA", "GB", "DE", "FR", "ES", "BR"}
    assert countries.most_common(1)[0][0] == "US"
    assert all(re.fullmatch(r"\+\d{11,12}", p) for p in dataset.phone.tolist())


# --- List and details agree ------------------------------------------------------


def test_list_revenue_equals_the_orders_in_details(store, details_by_email):
    rows = all_rows(store)
    listed = sum(cents(row["total_revenue"]) for row in rows)
    ordered = sum(
        cents(order["total"])
        for details in details_by_email.values()
        for order in details["orders"]
        if order["status"] != "abandoned"
    )
    assert listed == ordered > 0


def test_every_customer_details_agree_with_its_list_row(store, details_by_email):
    rows = all_rows(store)
    assert {row["customer_email"] for row in rows} == set(details_by_email)
    now = store.as_of.strftime("%Y-%m-%dT%H:%M:%SZ")

    for row in rows:
        details = details_by_email[row["customer_email"]]
        customer, stats, orders = (
            details["customer"],
            details["stats"],
            details["orders"],
        )
        assert customer["email"] == row["customer_email"]
        assert customer["name"] == row["customer_name"]
        assert row["customer_name"] == (
            f"{row['customer_first_name']} {row['customer_last_name']}"
        )
        for field in ("phone", "country", "state", "city"):
            assert customer[field] == row[f"customer_{field}"]
        for field in (
            "total_orders",
            "total_revenue",
            "total_refunds",
            "total_chargebacks",
            "lifetime_value",
            "first_order_date",
            "last_order_date",
        ):
            assert stats[field] == row[field], field

        by_status = defaultdict(list)
        for order in orders:
            by_status[order["status"]].append(cents(order["total"]))
        bought = by_status["approved"] + by_status["refunded"] + by_status["chargeback"]
        assert len(bought) == row["total_orders"]
        assert sum(bought) == cents(row["total_revenue"])
        assert sum(by_status["refunded"]) == cents(row["total_refunds"])
        assert sum(by_status["chargeback"]) == cents(row["total_chargebacks"])
        assert cents(row["lifetime_value"]) == sum(by_status["approved"])
        assert sum(by_status["abandoned"]) == cents(row["abandoned_value"])
        assert row["is_abandoned_customer"] == bool(by_status["abandoned"])
        assert row["products_purchased"] >= row["total_orders"]

        assert all(order["date"] <= now for order in orders)
        dates = [o["date"] for o in orders if o["status"] != "abandoned"]
        assert [o["date"] for o in orders] == sorted(
            (o["date"] for o in orders), reverse=True
        )
        if dates:
            assert row["first_order_date"] == min(dates)
            assert row["last_order_date"] == max(dates)
            count, revenue = len(bought), sum(bought)
            average = (2 * revenue + count) // (2 * count)  # half up
            assert cents(stats["average_order_value"]) == average
        else:
            assert row["first_order_date"] is row["last_order_date"] is None
            assert stats["average_order_value"] == 0
        assert row["order_frequency"] == _frequency(dates)


def test_quick_access_counts_match_the_list(store):
    counts = store.quick_access()
    rows = all_rows(store)

    assert (
        counts["customers"]
        == store.list_customers(offset=0, limit=1, type="customer")[1]
    )
    assert (
        counts["abandons"] == store.list_customers(offset=0, limit=1, type="abandon")[1]
    )
    assert counts["all"] == counts["customers"] + counts["abandons"] == len(rows)
    assert counts["all"] == len(store.emails())
    assert counts["refunds"] == sum(row["total_refunds"] > 0 for row in rows)
    assert counts["chargebacks"] == sum(row["total_chargebacks"] > 0 for row in rows)
    assert 0 < counts["chargebacks"] < counts["refunds"] < counts["customers"]


def test_types_split_buyers_from_leads(store):
    buyers = all_rows(store, type="customer")
    leads = all_rows(store, type="abandon")

    assert all(row["total_orders"] > 0 for row in buyers)
    assert all(row["first_order_date"] is not None for row in buyers)
    for row in leads:
        assert row["total_orders"] == 0 and row["total_revenue"] == 0
        assert row["first_order_date"] is row["last_order_date"] is None
        assert row["is_abandoned_customer"] and row["abandoned_value"] > 0


# --- Time ------------------------------------------------------------------------


def test_as_of_hides_every_later_event(cdnow):
    store = Store(cdnow, as_of=MID_1997)
    cutoff, cutoff_at = "1997-06-15T12:00:00Z", MID_1997.timestamp()
    rows = all_rows(store)

    # Details are checked against the list at this instant in
    # test_every_customer_details_agree_with_its_list_row.
    assert all((row["last_order_date"] or "") <= cutoff for row in rows)
    assert sum(row["total_orders"] for row in rows) == int(
        ((cdnow.event_kind == data.PURCHASE) & (cdnow.event_time <= cutoff_at)).sum()
    )

    # Customers exist from their first event on, whatever its kind.
    instant = MID_1997.timestamp()
    first_event = np.minimum.reduceat(cdnow.event_time, cdnow.offsets[:-1])
    assert len(rows) == int((first_event <= instant).sum())
    later = int(np.flatnonzero(first_event > instant)[0])
    assert store.details(str(cdnow.email[later])) is None
    assert Store(cdnow).details(str(cdnow.email[later])) is not None

    # Refunds count from the moment they happen, not from the order's date.
    refunded = cdnow.reversal != data.NO_REVERSAL
    pending = refunded & (cdnow.event_time <= instant) & (cdnow.reversal_time > instant)
    assert pending.any()
    event = int(np.flatnonzero(pending)[0])
    email = str(cdnow.email[cdnow.event_customer[event]])
    order_id = cdnow.order_id(event)
    status = {o["id"]: o["status"] for o in store.details(email)["orders"]}
    assert status[order_id] == "approved"
    later_store = Store(cdnow, as_of=MID_1997 + timedelta(days=61))
    later_status = {o["id"]: o["status"] for o in later_store.details(email)["orders"]}
    assert later_status[order_id] in ("refunded", "chargeback")


def test_clock_moves_and_the_list_can_lag(cdnow):
    store = Store(cdnow, as_of=MID_1997)
    assert store.as_of == MID_1997 and store.as_of.tzinfo is not None
    before = store.quick_access()

    store.advance(30 * 86_400)
    assert store.as_of == MID_1997 + timedelta(days=30)
    moved = store.quick_access()
    assert moved["all"] > before["all"]
    assert store.quick_access(visibility_delay=30 * 86_400) == before
    lagging = store.list_customers(
        offset=0, limit=50, sort="total_revenue", visibility_delay=30 * 86_400
    )
    assert lagging == Store(cdnow, as_of=MID_1997).list_customers(
        offset=0, limit=50, sort="total_revenue"
    )

    store.set_clock(datetime(1997, 6, 15, 12, 0))  # naive means UTC
    assert store.as_of == MID_1997
    assert store.quick_access() == before
    assert Store(cdnow).as_of == DEFAULT_AS_OF == datetime(1998, 7, 1, tzinfo=UTC)


def test_reads_while_the_clock_moves(cdnow):
    store = Store(cdnow, as_of=MID_1997)
    possible = {
        Store(cdnow, as_of=MID_1997 + timedelta(days=day)).quick_access()["all"]
        for day in range(0, 6)
    }
    errors: list[BaseException] = []
    seen: list[int] = []

    def read() -> None:
        try:
            for _ in range(20):
                rows, total = store.list_customers(offset=0, limit=20)
                assert len(rows) == 20
                seen.append(total)
                store.details(rows[0]["customer_email"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for thread in readers:
        thread.start()
    for day in range(1, 6):
        store.set_clock(MID_1997 + timedelta(days=day))
    for thread in readers:
        thread.join()

    assert not errors
    assert set(seen) <= possible


# --- Ordering and paging ---------------------------------------------------------


@pytest.mark.parametrize("column", ["first_order_date", "last_order_date"])
def test_nulls_sort_last_in_both_directions(cdnow, column):
    store = Store(cdnow, as_of=MID_1997)
    for direction in ("asc", "desc"):
        values = [
            row[column]
            for row in all_rows(store, sort=column, sort_direction=direction)
        ]
        present = [value for value in values if value is not None]
        assert values[len(present) :] == [None] * (len(values) - len(present))
        assert len(present) < len(values)
        assert present == sorted(present, reverse=direction == "desc")


@pytest.mark.parametrize(
    "column", ["total_orders", "is_abandoned_customer", "customer_country"]
)
def test_ties_keep_one_order_in_both_directions(cdnow, column):
    store = Store(cdnow)
    groups = {}
    for direction in ("asc", "desc"):
        rows = all_rows(store, sort=column, sort_direction=direction)
        values = [row[column] for row in rows]
        assert values == sorted(values, reverse=direction == "desc")
        tied = defaultdict(list)
        for row in rows:
            tied[row[column]].append(row["customer_email"])
        groups[direction] = tied
    assert groups["asc"] == groups["desc"]


def test_default_order_is_last_order_date_descending(cdnow):
    store = Store(cdnow)
    default = store.list_customers(offset=0, limit=500)
    explicit = store.list_customers(
        offset=0, limit=500, sort="last_order_date", sort_direction="desc"
    )
    assert default == explicit
    dates = [row["last_order_date"] for row in default[0]]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"sort": "total_revenue", "sort_direction": "desc"},
        {"sort": "customer_email"},
        {"sort": "order_frequency", "type": "customer"},
        {"sort": "abandoned_value", "type": "abandon", "sort_direction": "desc"},
        {"q": "son"},
    ],
)
def test_paging_yields_each_customer_once(cdnow, options):
    store = Store(cdnow, as_of=MID_1997)
    seen, offset = [], 0
    while True:
        rows, total = store.list_customers(offset=offset, limit=100, **options)
        if not rows:
            break
        seen += [row["customer_email"] for row in rows]
        offset += 100
    assert len(seen) == len(set(seen)) == total > 0
    assert seen == [row["customer_email"] for row in all_rows(store, **options)]


def test_text_sorts_by_code_point(cdnow):
    rows = all_rows(Store(cdnow), sort="customer_email")
    emails = [row["customer_email"] for row in rows]
    assert emails == sorted(emails)


# --- Parameters ----------------------------------------------------------------------


def test_search_is_case_insensitive_over_email_name_and_phone(cdnow):
    store = Store(cdnow)
    target = next(
        details["customer"]
        for details in map(store.details, store.emails()[1234:])
        if details["customer"]["name"].isascii()
    )

    for q in (
        target["email"].upper(),
        target["name"].swapcase(),
        target["phone"][-7:],
        f"  {target['email']} ",
    ):
        rows, total = store.list_customers(offset=0, limit=100, q=q)
        assert target["email"] in [row["customer_email"] for row in rows], q
        assert total == len(rows) or total > 100
    assert store.list_customers(offset=0, limit=10, q="no such person")[1] == 0

    smiths = all_rows(store, q="SMITH")
    expected = sum(
        "smith" in row["customer_email"].lower()
        or "smith" in row["customer_name"].lower()
        for row in all_rows(store)
    )
    assert len(smiths) == expected > 0


def test_columns_restrict_rows_in_canonical_order(cdnow):
    store = Store(cdnow)
    rows, _ = store.list_customers(
        offset=0, limit=5, columns=["total_revenue", "customer_email"]
    )
    assert [list(row) for row in rows] == [["customer_email", "total_revenue"]] * 5
    full, _ = store.list_customers(offset=0, limit=1)
    assert list(full[0]) == list(COLUMNS) == list(Store.SORTABLE_COLUMNS)
    assert len(COLUMNS) == 19


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"type": "buyer"}, "type"),
        ({"sort": "total_profit"}, "sort"),
        ({"sort": "total_revenue", "sort_direction": "up"}, "sort_direction"),
        ({"sort_direction": "DESC"}, "sort_direction"),
        ({"columns": ["customer_email", "password"]}, "columns"),
    ],
)
def test_bad_parameters_name_the_field(cdnow, options, field):
    with pytest.raises(ValidationError) as caught:
        Store(cdnow).list_customers(offset=0, limit=10, **options)
    assert caught.value.field == field
    assert caught.value.message


def test_details_lookup_is_exact(cdnow):
    store = Store(cdnow)
    email = next(e for e in store.emails() if e != e.lower())
    assert store.details(email)["customer"]["email"] == email
    assert store.details(email.lower()) is None
    assert store.details(f" {email}") is None
    assert store.details("nobody@example.com") is None

    details = store.details(email, include_orders=False, include_subscriptions=False)
    assert list(details) == ["customer", "stats", "orders", "subscriptions"]
    assert details["orders"] == details["subscriptions"] == []
    assert list(details["customer"]) == [
        "email",
        "name",
        "phone",
        "country",
        "state",
        "city",
        "address",
    ]


# --- Seeded extras -------------------------------------------------------------------


@pytest.mark.parametrize("world", ["cdnow", "small_synthetic"])
def test_refunds_and_chargebacks(world, request):
    dataset = request.getfixturevalue(world)
    purchase = dataset.event_kind == data.PURCHASE
    refund = dataset.reversal == data.REFUND
    chargeback = dataset.reversal == data.CHARGEBACK

    assert 0.025 < refund[purchase].mean() < 0.035
    assert 0.007 < chargeback[purchase].mean() < 0.013
    assert not (refund | chargeback)[~purchase].any()
    assert not (refund | chargeback)[dataset.event_cents == 0].any()
    delay = (dataset.reversal_time - dataset.event_time)[refund | chargeback]
    assert delay.min() >= 86_400 and delay.max() <= 60 * 86_400
    assert dataset.reversal_time.max() < datetime(1998, 9, 1, tzinfo=UTC).timestamp()
    assert (dataset.reversal_time[~(refund | chargeback)] == 0).all()


@pytest.mark.parametrize("world", ["cdnow", "small_synthetic"])
def test_carts_leads_and_order_ids(world, request):
    dataset = request.getfixturevalue(world)
    purchase = dataset.event_kind == data.PURCHASE
    per_customer = np.add.reduceat(purchase, dataset.offsets[:-1])
    carts = np.add.reduceat(~purchase, dataset.offsets[:-1])
    buyers, leads = per_customer > 0, per_customer == 0

    lead_share = leads.sum() / buyers.sum()
    expected = 0.10 if world == "cdnow" else 0.25  # a fifth of all is a quarter
    assert abs(lead_share - expected) < 0.01
    assert ((carts[leads] >= 1) & (carts[leads] <= 3)).all()
    assert 0.08 < (carts[buyers] > 0).mean() < 0.12
    assert dataset.event_time.min() >= datetime(1997, 1, 1, tzinfo=UTC).timestamp()
    assert dataset.event_time.max() < datetime(1998, 7, 1, tzinfo=UTC).timestamp()
    assert 500 < np.median(dataset.event_cents[~purchase]) < 5_000

    ids = [dataset.order_id(event) for event in range(dataset.n_events)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"conv-[0-9a-f]{16}", i) for i in ids[:1000])
    products = dataset.products(int(np.argmax(dataset.event_units)))
    assert len(products) == 5 and all(p.startswith("CD - ") for p in products)


@pytest.mark.parametrize("world", ["cdnow", "small_synthetic"])
def test_subscriptions_follow_list_visible_data(world, request):
    dataset = request.getfixturevalue(world)
    store = Store(dataset)
    per_customer = np.diff(dataset.subscription_offsets)
    buyers = (
        np.add.reduceat(dataset.event_kind == data.PURCHASE, dataset.offsets[:-1]) > 0
    )
    assert 0.07 < (per_customer[buyers] > 0).mean() < 0.09
    assert not (per_customer[~buyers] > 0).any()
    assert len(set(dataset.subscription_id.tolist())) == len(dataset.subscription_id)
    assert dataset.subscription_id.min() > 0

    statuses = Counter()
    for index in np.flatnonzero(per_customer).tolist():
        details = store.details(str(dataset.email[index]))
        (subscription,) = details["subscriptions"]
        created = int(dataset.subscription_time[dataset.subscription_offsets[index]])
        events = slice(dataset.offsets[index], dataset.offsets[index + 1])
        reversed_at = dataset.reversal_time[events][dataset.reversal[events] > 0]
        cancelled = bool(
            ((reversed_at >= created) & (reversed_at <= store.as_of.timestamp())).any()
        )
        statuses[subscription["status"]] += 1
        assert subscription["status"] == ("cancelled" if cancelled else "active")
        if cancelled:
            assert subscription["next_charge_date"] is None
        else:
            last = date.fromisoformat(details["stats"]["last_order_date"][:10])
            assert subscription["next_charge_date"] == str(last + timedelta(days=30))
        assert subscription["product"] in data.SUBSCRIPTION_PRODUCTS
    assert statuses["active"] > statuses["cancelled"] > 0


def test_subscriptions_appear_once_created(cdnow):
    index = int(np.flatnonzero(np.diff(cdnow.subscription_offsets))[0])
    created = int(cdnow.subscription_time[cdnow.subscription_offsets[index]])
    email = str(cdnow.email[index])
    moment = datetime.fromtimestamp(created, tz=UTC)

    assert len(Store(cdnow, as_of=moment).details(email)["subscriptions"]) == 1
    earlier = Store(cdnow, as_of=moment - timedelta(seconds=1)).details(email)
    assert earlier is None or earlier["subscriptions"] == []


def test_synthetic_looks_like_cdnow(small_synthetic):
    dataset = small_synthetic
    purchase = dataset.event_kind == data.PURCHASE
    orders = np.add.reduceat(purchase, dataset.offsets[:-1])
    buyers = orders[orders > 0]

    assert dataset.n_customers == 25_000
    assert len(buyers) == 20_000
    assert 0.4 < (buyers == 1).mean() < 0.8
    assert buyers.max() >= 20
    days = dataset.event_time[purchase] // 86_400
    assert days.min() == date(1997, 1, 1).toordinal() - date(1970, 1, 1).toordinal()
    assert np.unique(days).size > 500
    assert 1_000 < np.median(dataset.event_cents[purchase]) < 4_000


def test_money_has_two_decimals(cdnow):
    rows = all_rows(Store(cdnow))
    for row in rows[:5000]:
        for field in ("total_revenue", "total_refunds", "lifetime_value"):
            assert round(row[field], 2) == row[field]
            assert isinstance(row[field], float)


# --- Helpers -------------------------------------------------------------------------


def _utc_dates(times: np.ndarray) -> list[date]:
    epoch = date(1970, 1, 1).toordinal()
    return [date.fromordinal(epoch + int(t) // 86_400) for t in times]


def _frequency(dates: list[str]) -> int:
    if len(dates) < 2:
        return 0
    days = [date.fromisoformat(d[:10]) for d in dates]
    return (max(days) - min(days)).days // (len(dates) - 1)
