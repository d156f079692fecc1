"""The SQL models against CDNOW: a raw warehouse built from the master file,
its marts held against figures worked out in plain Python."""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from pipelines import models
from pipelines.models import (
    ModelBuildError,
    ModelConfigError,
    ModelCycleError,
    build_models,
    export_marts,
    publish_copy,
    run_data_tests,
)
from tests.cdnow_expected import (
    email_for,
    expected_cohort_sizes,
    expected_gross_by_cohort_and_month,
    expected_monthly_customers,
    expected_monthly_gross,
    expected_monthly_orders,
    expected_retention,
    find_cdnow_master,
    month_of,
    months_between,
    read_cdnow,
)
from tests.drilling import held_open

MARTS = (
    "cohort_ltv",
    "cohort_retention",
    "customer_ltv",
    "ltv_check",
    "monthly_revenue",
    "rfm_segments",
)
STAGING = (
    "stg_customers",
    "stg_order_products",
    "stg_orders",
    "stg_subscriptions",
    "stg_syncs",
)

DELETED = "00002"  # the customer the reconcile found gone
API_DISAGREES = {"00003": Decimal("1.00"), "00005": Decimal("-2.50")}
LEADS = [f"lead{n:05d}@example.com" for n in range(1, 6)]
COUNTRIES = ("US", "GB", "DE", "FR", "JP")
LOAD_ID = "1717171717.123456"

# The raw tables as dlt leaves them, in the column order the CSVs follow.
RAW_DDL = """
create schema elasticfunnels;

create table elasticfunnels.customers (
    email_key varchar, customer_email varchar, customer_name varchar,
    customer_first_name varchar, customer_last_name varchar,
    customer_phone varchar, customer_country varchar, customer_state varchar,
    customer_city varchar, first_order_date timestamptz,
    last_order_date timestamptz, total_orders bigint,
    total_revenue decimal(14,2), total_refunds decimal(14,2),
    total_chargebacks decimal(14,2), lifetime_value decimal(14,2),
    order_frequency bigint, products_purchased bigint,
    is_abandoned_customer boolean, abandoned_value decimal(14,2),
    row_hash varchar, synced_at timestamptz, deleted_at timestamptz,
    _dlt_load_id varchar not null, _dlt_id varchar not null
);

create table elasticfunnels.details (
    email_key varchar, email varchar, name varchar, phone varchar,
    country varchar, state varchar, city varchar, address varchar,
    total_orders bigint, total_revenue decimal(14,2),
    total_refunds decimal(14,2), total_chargebacks decimal(14,2),
    lifetime_value decimal(14,2), average_order_value decimal(14,2),
    first_order_date timestamptz, last_order_date timestamptz,
    synced_at timestamptz, _dlt_load_id varchar not null,
    _dlt_id varchar not null
);

create table elasticfunnels.details__orders (
    id varchar, date timestamptz, total decimal(14,2), status varchar,
    _dlt_parent_id varchar not null, _dlt_root_id varchar not null,
    _dlt_list_idx bigint not null, _dlt_id varchar not null
);

create table elasticfunnels.details__orders__products (
    value varchar, _dlt_parent_id varchar not null,
    _dlt_root_id varchar not null, _dlt_list_idx bigint not null,
    _dlt_id varchar not null
);

create table elasticfunnels.details__subscriptions (
    id bigint, status varchar, product varchar, next_charge_date date,
    _dlt_parent_id varchar not null, _dlt_root_id varchar not null,
    _dlt_list_idx bigint not null, _dlt_id varchar not null
);

create table elasticfunnels.quick_access (
    run_at timestamptz, all_customers bigint, customers bigint,
    abandons bigint, chargebacks bigint, refunds bigint,
    _dlt_load_id varchar not null, _dlt_id varchar not null
);
"""


def dlt_id(*parts: object) -> str:
    """A 14-character id shaped like dlt's, stable for the same parts."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=10)
    return base64.b64encode(digest.digest()).decode()[:14]


def order_status(index: int) -> str:
    """Which CDNOW purchases the fixture refunds or charges back."""
    if index % 41 == 7:
        return "refunded"
    if index % 97 == 13:
        return "chargeback"
    return "approved"


def ordered_at(purchase, index: int) -> datetime:
    minutes = (int(purchase.customer_id) * 37 + index * 11) % 1440
    midnight = datetime.combine(purchase.purchased_on, datetime.min.time())
    return (midnight + timedelta(minutes=minutes)).replace(tzinfo=UTC)


def iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else ""


def write_csv(path: Path, rows: list[tuple]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["_"] * len(rows[0]))
        writer.writerows(rows)


def build_raw_warehouse(path: Path, purchases) -> None:
    """Raw tables shaped as dlt writes them, one CDNOW customer a customer.

    Every purchase is an order at some time of day; a few are refunded or
    charged back; some customers also left an abandoned cart, after the data
    ends; five leads never bought; customer 00002 was deleted; the api's
    lifetime value is off for 00003 and 00005.
    """
    synced = datetime(1998, 9, 1, 6, 0, tzinfo=UTC)
    by_customer = defaultdict(list)
    for index, purchase in enumerate(purchases):
        by_customer[purchase.customer_id].append((index, purchase))

    customers, details, orders, products, subscriptions = [], [], [], [], []
    for number, (customer_id, bought) in enumerate(sorted(by_customer.items())):
        email = email_for(customer_id)
        parent = dlt_id("details", email)
        totals = defaultdict(Decimal)
        moments = []

        for position, (index, purchase) in enumerate(bought):
            status = order_status(index)
            moment = ordered_at(purchase, index)
            moments.append(moment)
            order_row_id = dlt_id("order", index)
            totals["revenue"] += purchase.dollar_value
            totals[status] += purchase.dollar_value
            orders.append(
                (
                    f"{customer_id}-{position:03d}",
                    iso(moment),
                    purchase.dollar_value,
                    status,
                    parent,
                    parent,
                    position,
                    order_row_id,
                )
            )
            for item in range(min(purchase.count_cds, 2)):
                products.append(
                    (
                        f"cd-{(index + item) % 50:02d}",
                        order_row_id,
                        parent,
                        item,
                        dlt_id("product", index, item),
                    )
                )

        abandoned = number % 10 == 3
        if abandoned:
            orders.append(
                (
                    f"{customer_id}-cart",
                    "1998-07-15T12:00:00+00:00",
                    "99.99",
                    "abandoned",
                    parent,
                    parent,
                    len(bought),
                    dlt_id("cart", email),
                )
            )
        if int(customer_id) % 100 == 0:
            status = "cancelled" if int(customer_id) % 300 == 0 else "active"
            next_charge = "" if status == "cancelled" else "1998-07-01"
            subscriptions.append(
                (
                    int(customer_id),
                    status,
                    "cd club",
                    next_charge,
                    parent,
                    parent,
                    0,
                    dlt_id("subscription", email),
                )
            )

        net = totals["revenue"] - totals["refunded"] - totals["chargeback"]
        api_net = net + API_DISAGREES.get(customer_id, Decimal(0))
        country = COUNTRIES[number % len(COUNTRIES)]
        served = email.upper() if number % 7 == 0 else email
        deleted = iso(synced) if customer_id == DELETED else ""
        customers.append(
            (
                email,
                served,
                f"Customer {customer_id}",
                "Customer",
                customer_id,
                "",
                country,
                "",
                "",
                iso(min(moments)),
                iso(max(moments)),
                len(bought),
                totals["revenue"],
                totals["refunded"],
                totals["chargeback"],
                api_net,
                30,
                len(bought),
                abandoned,
                "99.99" if abandoned else "0.00",
                dlt_id("hash", email),
                iso(synced),
                deleted,
                LOAD_ID,
                dlt_id("customer", email),
            )
        )
        details.append(
            (
                email,
                served,
                f"Customer {customer_id}",
                "",
                country,
                "",
                "",
                "",
                len(bought),
                totals["revenue"],
                totals["refunded"],
                totals["chargeback"],
                net,
                round(totals["revenue"] / len(bought), 2),
                iso(min(moments)),
                iso(max(moments)),
                iso(synced),
                LOAD_ID,
                parent,
            )
        )

    for number, email in enumerate(LEADS):
        parent = dlt_id("details", email)
        abandoned = number == 0
        customers.append(
            (
                email,
                email,
                "A Lead",
                "A",
                "Lead",
                "",
                "US",
                "",
                "",
                "",
                "",
                0,
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                0,
                abandoned,
                "19.99" if abandoned else "0.00",
                dlt_id("hash", email),
                iso(synced),
                "",
                LOAD_ID,
                dlt_id("customer", email),
            )
        )
        details.append(
            (
                email,
                email,
                "A Lead",
                "",
                "US",
                "",
                "",
                "",
                0,
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "",
                iso(synced),
                LOAD_ID,
                parent,
            )
        )
        if abandoned:
            orders.append(
                (
                    "lead-cart",
                    "1998-08-01T09:00:00+00:00",
                    "19.99",
                    "abandoned",
                    parent,
                    parent,
                    0,
                    dlt_id("cart", email),
                )
            )

    tables = {
        "customers": customers,
        "details": details,
        "details__orders": orders,
        "details__orders__products": products,
        "details__subscriptions": subscriptions,
    }
    con = duckdb.connect(str(path))
    try:
        con.execute(RAW_DDL)
        for table, rows in tables.items():
            staged = path.with_name(f"{table}.csv")
            write_csv(staged, rows)
            con.execute(
                f"copy elasticfunnels.{table} from '{staged}' (header, nullstr '')"
            )
            staged.unlink()
        con.execute(
            "insert into elasticfunnels.quick_access values "
            f"(timestamptz '{iso(synced)}', {len(customers)}, "
            f"{len(by_customer)}, 0, 0, 0, '{LOAD_ID}', 'qa0000000000aa')"
        )
    finally:
        con.close()


def snapshot(con, relations) -> dict[str, list[tuple]]:
    return {
        relation: con.execute(f"select * from {relation} order by all").fetchall()
        for relation in relations
    }


ALL_MODELS = [f"staging.{name}" for name in STAGING] + [
    f"marts.{name}" for name in MARTS
]


# --- fixtures -------------------------------------------------------------


@pytest.fixture(scope="session")
def purchases():
    return read_cdnow(find_cdnow_master())


@pytest.fixture(scope="session")
def cdnow_warehouse(purchases, tmp_path_factory) -> Path:
    """The CDNOW raw warehouse with the models built, session in UTC."""
    path = tmp_path_factory.mktemp("cdnow") / "efw.duckdb"
    build_raw_warehouse(path, purchases)
    con = duckdb.connect(str(path))
    try:
        con.execute("set TimeZone = 'UTC'")
        build_models(con)
    finally:
        con.close()
    return path


@pytest.fixture(scope="session")
def utc_snapshot(cdnow_warehouse):
    con = duckdb.connect(str(cdnow_warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        return snapshot(con, ALL_MODELS)
    finally:
        con.close()


@pytest.fixture
def warehouse(cdnow_warehouse, tmp_path) -> Path:
    """A copy of the built CDNOW warehouse, free to change."""
    path = tmp_path / "efw.duckdb"
    shutil.copyfile(cdnow_warehouse, path)
    return path


@pytest.fixture
def con(cdnow_warehouse):
    con = duckdb.connect(str(cdnow_warehouse), read_only=True)
    yield con
    con.close()


def expected_net_by_cohort_and_month(purchases):
    """Gross less what the fixture refunded or charged back, by cohort."""
    kept = [p for p in enumerate(purchases) if p[1].customer_id != DELETED]
    first = {}
    for _, p in kept:
        first[p.customer_id] = min(
            first.get(p.customer_id, p.purchased_on), p.purchased_on
        )
    net = defaultdict(Decimal)
    for index, p in kept:
        if order_status(index) == "approved":
            key = (month_of(first[p.customer_id]), month_of(p.purchased_on))
            net[key] += p.dollar_value
    return net


# --- the figures ----------------------------------------------------------


def test_cohort_sizes_match_cdnow(con, purchases):
    rows = con.execute(
        "select distinct cohort_month, cohort_size from marts.cohort_retention"
    ).fetchall()
    expected = expected_cohort_sizes(purchases, exclude={DELETED})

    assert dict(rows) == expected
    assert sum(expected.values()) == 23_570 - 1
    assert set(expected) == {date(1997, 1, 1), date(1997, 2, 1), date(1997, 3, 1)}


def test_gross_revenue_per_cohort_and_month_matches_cdnow(con, purchases):
    rows = con.execute(
        "select cohort_month, activity_month, gross_revenue from marts.cohort_retention"
    ).fetchall()
    actual = {(cohort, month): gross for cohort, month, gross in rows}
    expected = expected_gross_by_cohort_and_month(purchases, exclude={DELETED})

    assert set(expected) <= set(actual)
    for key in actual:
        assert actual[key] == expected.get(key, Decimal(0)), key


def test_retention_for_twelve_periods_matches_cdnow(con, purchases):
    rows = con.execute(
        "select cohort_month, period_number, retention_rate "
        "from marts.cohort_retention where period_number < 12"
    ).fetchall()
    actual = {(cohort, period): rate for cohort, period, rate in rows}
    expected = expected_retention(purchases, periods=12, exclude={DELETED})

    assert actual.keys() == expected.keys()
    for key, rate in expected.items():
        assert actual[key] == pytest.approx(rate, abs=1e-12), key
    assert all(actual[cohort, 0] == 1 for cohort, _ in actual)


def test_net_revenue_lands_in_the_month_of_the_original_order(con, purchases):
    rows = con.execute(
        "select cohort_month, activity_month, net_revenue from marts.cohort_retention"
    ).fetchall()
    expected = expected_net_by_cohort_and_month(purchases)

    for cohort, month, net in rows:
        assert net == expected.get((cohort, month), Decimal(0)), (cohort, month)


def test_cohort_grid_stops_at_the_last_order_month(con):
    # The abandoned carts of July and August 1998 are not orders.
    rows = con.execute(
        "select cohort_month, min(activity_month), max(activity_month), "
        "count(*), max(period_number) "
        "from marts.cohort_retention group by all order by 1"
    ).fetchall()

    assert [row[2] for row in rows] == [date(1998, 6, 1)] * 3
    for cohort, first, _, count, last_period in rows:
        assert first == cohort
        assert count == last_period + 1 == months_between(cohort, date(1998, 6, 1)) + 1


def test_cohort_ltv_reads_cumulative_net_revenue(con, purchases):
    net = expected_net_by_cohort_and_month(purchases)
    sizes = expected_cohort_sizes(purchases, exclude={DELETED})
    rows = con.execute(
        "select cohort_month, cohort_size, ltv_month_0, ltv_month_12 "
        "from marts.cohort_ltv order by cohort_month"
    ).fetchall()

    assert len(rows) == 3
    for cohort, size, month_0, month_12 in rows:
        assert size == sizes[cohort]
        through_12 = sum(
            amount
            for (c, month), amount in net.items()
            if c == cohort and months_between(cohort, month) <= 12
        )
        assert month_0 == round(net[cohort, cohort] / size, 2)
        assert month_12 == round(through_12 / size, 2)


def test_monthly_revenue_matches_cdnow(con, purchases):
    rows = con.execute(
        "select revenue_month, count_orders, gross_revenue, count_customers, "
        "count_new_customers, count_returning_customers "
        "from marts.monthly_revenue order by revenue_month"
    ).fetchall()
    gross = expected_monthly_gross(purchases, exclude={DELETED})
    orders = expected_monthly_orders(purchases, exclude={DELETED})
    buyers = expected_monthly_customers(purchases, exclude={DELETED})
    sizes = expected_cohort_sizes(purchases, exclude={DELETED})

    assert [row[0] for row in rows] == sorted(gross)
    assert len(rows) == 18
    for month, count_orders, gross_revenue, active, new, returning in rows:
        assert count_orders == orders[month]
        assert gross_revenue == gross[month]
        assert active == buyers[month]
        assert new == sizes.get(month, 0)
        assert returning == active - new


def test_customer_ltv_keeps_leads_and_flags_the_deleted(con, purchases):
    counts = con.execute(
        "select count(*), count(*) filter (is_lead), "
        "count(*) filter (is_deleted), max(as_of_date), "
        "count(*) filter (is_repeat_buyer) from marts.customer_ltv"
    ).fetchone()
    deleted = con.execute(
        "select email_key, count_orders from marts.customer_ltv where is_deleted"
    ).fetchall()
    repeat = sum(1 for n in _orders_per_customer(purchases).values() if n >= 2)

    assert counts[:4] == (23_570 + len(LEADS), len(LEADS), 1, date(1998, 6, 30))
    assert counts[4] == repeat
    assert deleted == [(email_for(DELETED), 2)]


def _orders_per_customer(purchases):
    counts = defaultdict(int)
    for purchase in purchases:
        counts[purchase.customer_id] += 1
    return counts


def test_ltv_check_lists_only_where_the_api_disagrees(con):
    rows = con.execute(
        "select email_key, net_revenue - api_lifetime_value, difference "
        "from marts.ltv_check order by email_key"
    ).fetchall()

    assert rows == [
        (email_for(customer), -off, -off)
        for customer, off in sorted(API_DISAGREES.items())
    ]


def test_rfm_scores_every_live_buyer_into_a_segment(con):
    rows = con.execute(
        "select segment, count(*), min(recency_score), max(recency_score) "
        "from marts.rfm_segments group by segment"
    ).fetchall()
    per_score = con.execute(
        "select recency_score, count(*) from marts.rfm_segments group by all"
    ).fetchall()

    assert sum(row[1] for row in rows) == 23_570 - 1
    assert {row[0] for row in rows} <= {
        "champions",
        "loyal",
        "potential_loyalists",
        "new",
        "promising",
        "need_attention",
        "about_to_sleep",
        "at_risk",
        "cant_lose",
        "hibernating",
    }
    assert sorted(score for score, _ in per_score) == [1, 2, 3, 4, 5]


def test_rfm_buyers_with_equal_figures_share_a_score(con):
    # A score is the quintile of a buyer's place: how many buyers did worse.
    rows = con.execute(
        "select r.recency_score, r.frequency_score, r.monetary_score, "
        "c.days_since_last_order, c.count_orders, c.net_revenue "
        "from marts.rfm_segments r join marts.customer_ltv c using (email_key)"
    ).fetchall()
    buyers = len(rows)
    assert buyers == 23_570 - 1
    for position, better_is in ((0, "lower"), (1, "higher"), (2, "higher")):
        figures = sorted(row[position + 3] for row in rows)
        if better_is == "lower":
            figures.reverse()
        worse: dict[object, int] = {}
        for place, figure in enumerate(figures):
            worse.setdefault(figure, place)
        expected = [1 + 5 * worse[row[position + 3]] // buyers for row in rows]
        assert [row[position] for row in rows] == expected, position
    # Half the CDNOW buyers ordered once: they all score 1 on frequency.
    one_timers = {row[1] for row in rows if row[4] == 1}
    assert one_timers == {1}
    assert sum(row[4] == 1 for row in rows) > buyers * 0.4


# --- time zones -----------------------------------------------------------


def test_session_time_zone_changes_nothing(warehouse, utc_snapshot):
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("set TimeZone = 'Asia/Tokyo'")
        build_models(con)
        tokyo = snapshot(con, ALL_MODELS)
    finally:
        con.close()

    for relation in ALL_MODELS:
        assert tokyo[relation] == utc_snapshot[relation], relation


def tiny_warehouse(con, orders: list[tuple[str, str, str]]) -> None:
    """One customer's orders: (order id, ISO time, status), 10.00 each."""
    models.ensure_raw_tables(con)
    con.execute(
        "insert into elasticfunnels.customers (email_key, _dlt_id) "
        "values ('a@example.com', 'c1'), ('lead@example.com', 'c2')"
    )
    con.execute(
        "insert into elasticfunnels.details (email_key, _dlt_id) "
        "values ('a@example.com', 'd1'), ('lead@example.com', 'd2')"
    )
    for position, (order_id, moment, status) in enumerate(orders):
        con.execute(
            "insert into elasticfunnels.details__orders "
            "(id, date, total, status, _dlt_parent_id, _dlt_list_idx, _dlt_id) "
            f"values ('{order_id}', '{moment}', 10.00, '{status}', 'd1', "
            f"{position}, 'o{position}')"
        )


def test_business_time_zone_moves_orders_between_months():
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    tiny_warehouse(
        con,
        [
            ("first", "1997-01-10T12:00:00+00:00", "approved"),
            ("late", "1997-01-31T23:00:00+00:00", "approved"),
            ("early", "1997-03-01T03:00:00+00:00", "refunded"),
        ],
    )

    def months(tz: str):
        build_models(con, business_timezone=tz)
        return con.execute(
            "select revenue_month, count_orders, net_revenue "
            "from marts.monthly_revenue order by 1"
        ).fetchall()

    assert months("UTC") == [
        (date(1997, 1, 1), 2, Decimal("20.00")),
        (date(1997, 2, 1), 0, Decimal("0.00")),
        (date(1997, 3, 1), 1, Decimal("0.00")),
    ]
    assert months("Asia/Tokyo") == [
        (date(1997, 1, 1), 1, Decimal("10.00")),
        (date(1997, 2, 1), 1, Decimal("10.00")),
        (date(1997, 3, 1), 1, Decimal("0.00")),
    ]
    assert months("America/New_York") == [
        (date(1997, 1, 1), 2, Decimal("20.00")),
        (date(1997, 2, 1), 1, Decimal("0.00")),
    ]
    con.close()


def test_a_month_without_buyers_shows_zero():
    con = duckdb.connect()
    tiny_warehouse(
        con,
        [
            ("jan", "1997-01-10T12:00:00+00:00", "approved"),
            ("apr", "1997-04-10T12:00:00+00:00", "chargeback"),
        ],
    )
    build_models(con)
    rows = con.execute(
        "select period_number, count_active_customers, retention_rate, "
        "net_revenue, cumulative_net_revenue_per_customer "
        "from marts.cohort_retention order by period_number"
    ).fetchall()
    ltv = con.execute(
        "select ltv_month_0, ltv_month_1, ltv_month_3, ltv_month_6 "
        "from marts.cohort_ltv"
    ).fetchall()

    assert rows == [
        (0, 1, 1.0, Decimal("10.00"), Decimal("10.00")),
        (1, 0, 0.0, Decimal("0.00"), Decimal("10.00")),
        (2, 0, 0.0, Decimal("0.00"), Decimal("10.00")),
        (3, 1, 1.0, Decimal("0.00"), Decimal("10.00")),
    ]
    # The data ends on 10 April: month 3 is not over, so too young to tell.
    assert ltv == [(Decimal("10.00"), Decimal("10.00"), None, None)]
    assert run_data_tests(con) == []
    con.close()


@pytest.mark.parametrize(("last_day", "april_complete"), [(10, False), (30, True)])
def test_the_month_the_data_ends_in_is_complete_only_on_its_last_day(
    last_day, april_complete
):
    con = duckdb.connect()
    tiny_warehouse(
        con,
        [
            ("jan", "1997-01-10T12:00:00+00:00", "approved"),
            ("apr", f"1997-04-{last_day}T12:00:00+00:00", "approved"),
        ],
    )
    build_models(con)
    assert_january_to_april(con, april_complete)
    con.close()


def assert_january_to_april(con, april_complete: bool) -> None:
    """January to March are over; April is as told, in both marts that flag
    a month, and cohort_ltv's month 3 (April) is null while it is open."""
    expected = [
        (date(1997, 1, 1), True),
        (date(1997, 2, 1), True),
        (date(1997, 3, 1), True),
        (date(1997, 4, 1), april_complete),
    ]
    for mart, month in (
        ("cohort_retention", "activity_month"),
        ("monthly_revenue", "revenue_month"),
    ):
        rows = con.execute(
            f"select {month}, is_complete_month from marts.{mart} order by 1"
        ).fetchall()
        assert rows == expected, mart
    [(month_3,)] = con.execute("select ltv_month_3 from marts.cohort_ltv").fetchall()
    assert month_3 == (Decimal("20.00") if april_complete else None)


def test_an_order_dated_after_the_latest_sync_fails_a_data_test():
    con = duckdb.connect()
    tiny_warehouse(
        con,
        [
            ("jan", "1997-01-10T12:00:00+00:00", "approved"),
            ("typo", "2031-01-05T12:00:00+00:00", "approved"),
        ],
    )
    build_models(con)
    assert run_data_tests(con) == []  # no sync recorded: nothing to hold it to
    con.execute(
        "insert into elasticfunnels.quick_access (run_at, _dlt_id) "
        "values ('1997-02-01T03:15:00+00:00', 'q1')"
    )
    build_models(con)
    [failure] = run_data_tests(con)
    assert (failure.model, failure.count_rows) == ("stg_orders", 1)
    assert "after the latest sync" in failure.rule
    con.close()


def test_an_order_that_moved_to_a_new_email_counts_once():
    # The API renamed a customer: the old email is gone (marked deleted, its
    # orders kept as last synced) and the new one lists the same order.
    con = duckdb.connect()
    tiny_warehouse(con, [("moved", "1997-01-10T12:00:00+00:00", "approved")])
    con.execute(
        "insert into elasticfunnels.customers (email_key, deleted_at, _dlt_id) "
        "values ('old@example.com', '1997-02-01T00:00:00+00:00', 'c3')"
    )
    con.execute(
        "insert into elasticfunnels.details (email_key, _dlt_id) "
        "values ('old@example.com', 'd3')"
    )
    con.execute(
        "insert into elasticfunnels.details__orders "
        "(id, date, total, status, _dlt_parent_id, _dlt_list_idx, _dlt_id) values "
        "('moved', '1997-01-10T12:00:00+00:00', 10.00, 'approved', 'd3', 0, 'o9'), "
        "('only-old', '1996-12-01T12:00:00+00:00', 5.00, 'approved', 'd3', 1, 'o8')"
    )
    build_models(con)
    assert con.execute(
        "select order_id, email_key from staging.stg_orders order by 1"
    ).fetchall() == [("moved", "a@example.com"), ("only-old", "old@example.com")]
    assert con.execute(
        "select email_key, count_orders, net_revenue, is_deleted "
        "from marts.customer_ltv where not is_lead order by 1"
    ).fetchall() == [
        ("a@example.com", 1, Decimal("10.00"), False),
        ("old@example.com", 1, Decimal("5.00"), True),
    ]
    assert run_data_tests(con) == []
    con.close()


@pytest.mark.parametrize(
    ("read_at", "april_complete"),
    [("1997-04-30T03:15:00+00:00", False), ("1997-05-01T03:15:00+00:00", True)],
)
def test_a_month_is_complete_only_if_the_sync_read_it_after_its_end(
    read_at, april_complete
):
    # A nightly sync at 03:15 on 30 April sees that day's first orders: the
    # data then ends on April's last day, but April is not over.
    con = duckdb.connect()
    tiny_warehouse(
        con,
        [
            ("jan", "1997-01-10T12:00:00+00:00", "approved"),
            ("apr", "1997-04-30T02:00:00+00:00", "approved"),
        ],
    )
    con.execute(
        "insert into elasticfunnels.quick_access (run_at, _dlt_id) values "
        "('1997-03-02T03:15:00+00:00', 'q1'), (?, 'q2')",
        [read_at],
    )
    build_models(con)
    assert_january_to_april(con, april_complete)
    assert con.execute(
        "select synced_on from staging.stg_syncs order by 1"
    ).fetchall() == [
        (date(1997, 3, 2),),
        (date.fromisoformat(read_at[:10]),),
    ]
    con.close()


@pytest.mark.parametrize("name", ["Mars/Olympus", "UTC'; drop table x; --", ""])
def test_unknown_business_time_zone_is_a_config_error(name):
    con = duckdb.connect()
    with pytest.raises(ModelConfigError, match="time zone"):
        build_models(con, business_timezone=name)
    con.close()


# --- a young warehouse and a broken project -------------------------------


def test_models_build_on_a_warehouse_without_most_raw_tables():
    con = duckdb.connect()
    con.execute("create schema elasticfunnels")
    con.execute(
        "create table elasticfunnels.customers (email_key varchar, "
        "customer_country varchar, _dlt_load_id varchar, _dlt_id varchar)"
    )
    con.execute(
        "insert into elasticfunnels.customers values ('x@example.com', 'US', '1', 'a')"
    )

    built = build_models(con)
    ltv = con.execute(
        "select email_key, is_lead, is_deleted, count_orders, net_revenue "
        "from marts.customer_ltv"
    ).fetchall()
    columns = {
        row[0] for row in con.execute("describe elasticfunnels.customers").fetchall()
    }

    assert len(built) == len(ALL_MODELS)
    assert ltv == [("x@example.com", True, False, 0, Decimal("0.00"))]
    assert "deleted_at" in columns
    assert con.execute("select count(*) from staging.stg_subscriptions").fetchone() == (
        0,
    )
    assert con.execute("select count(*) from marts.monthly_revenue").fetchone() == (0,)
    assert run_data_tests(con) == []
    con.close()


def write_models(root: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    return root


def test_models_build_in_dependency_order(tmp_path):
    sql_dir = write_models(
        tmp_path,
        {
            "staging/stg_a.sql": "select 1 as n",
            "marts/aa_last.sql": "select * from marts.zz_first",
            "marts/zz_first.sql": "select * from staging.stg_a",
        },
    )
    con = duckdb.connect()

    assert build_models(con, sql_dir=sql_dir) == [
        "staging.stg_a",
        "marts.zz_first",
        "marts.aa_last",
    ]
    con.close()


def test_a_cycle_is_named(tmp_path):
    sql_dir = write_models(
        tmp_path,
        {
            "marts/one.sql": "select * from marts.two",
            "marts/two.sql": "select * from marts.three",
            "marts/three.sql": "select * from marts.one",
        },
    )

    with pytest.raises(ModelCycleError, match="one -> two -> three -> one"):
        build_models(duckdb.connect(), sql_dir=sql_dir)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"marts/m.sql": "select * from elasticfunnels.customers"}, "staging"),
        ({"marts/m.sql": "select * from staging.stg_nowhere"}, "stg_nowhere"),
        ({"staging/s.sql": "select '{{ brand }}' as b"}, "brand"),
    ],
)
def test_a_badly_laid_out_project_is_a_config_error(tmp_path, files, message):
    sql_dir = write_models(tmp_path, files)

    with pytest.raises(ModelConfigError, match=message):
        build_models(duckdb.connect(), sql_dir=sql_dir)


class InterruptedAt:
    """A connection whose statement naming `relation` is stopped by Ctrl-C."""

    def __init__(self, con, relation: str) -> None:
        self.con = con
        self.relation = relation

    def execute(self, sql: str, *args):
        if f" {self.relation} as" in sql:
            # What duckdb 2.0 raises when a SIGINT stops a running query.
            raise RuntimeError("Query interrupted")
        return self.con.execute(sql, *args)


def test_ctrl_c_during_a_build_is_a_ctrl_c_and_keeps_the_last_models():
    con = duckdb.connect()
    tiny_warehouse(con, [("jan", "1997-01-10T12:00:00+00:00", "approved")])
    build_models(con)
    with pytest.raises(KeyboardInterrupt):
        build_models(InterruptedAt(con, "marts.monthly_revenue"))
    assert con.execute("select count(*) from marts.monthly_revenue").fetchone() == (1,)
    con.close()


def test_a_failed_build_keeps_the_last_good_models(tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(models.SQL_DIR, sql_dir)
    con = duckdb.connect()
    tiny_warehouse(con, [("jan", "1997-01-10T12:00:00+00:00", "approved")])
    build_models(con, sql_dir=sql_dir)

    con.execute(
        "insert into elasticfunnels.customers (email_key, _dlt_id) "
        "values ('new@example.com', 'c3')"
    )
    (sql_dir / "marts" / "zz_broken.sql").write_text(
        "select no_such_column from marts.customer_ltv"
    )
    with pytest.raises(ModelBuildError, match="marts.zz_broken"):
        build_models(con, sql_dir=sql_dir)

    count = con.execute("select count(*) from marts.customer_ltv").fetchone()
    broken = con.execute(
        "select count(*) from information_schema.tables where table_name = 'zz_broken'"
    ).fetchone()
    assert count == (2,)
    assert broken == (0,)
    con.close()


# --- data tests -----------------------------------------------------------


def test_data_tests_pass_on_cdnow(con):
    assert run_data_tests(con) == []


def test_a_broken_rule_is_named_with_its_rows(warehouse):
    con = duckdb.connect(str(warehouse))
    con.execute(
        "update marts.customer_ltv set net_revenue = net_revenue + 1 "
        "where email_key = 'c00001@example.com'"
    )
    con.execute(
        "insert into marts.monthly_revenue select * from marts.monthly_revenue "
        "where revenue_month = date '1997-05-01'"
    )
    con.execute(
        "update marts.cohort_retention set count_active_customers = 99999, "
        "retention_rate = 99999.0 / cohort_size where period_number = 4"
    )
    failures = {(f.model, f.rule): f for f in run_data_tests(con)}
    con.close()

    net = failures.pop(
        ("customer_ltv", "net revenue is gross revenue less refunds and chargebacks")
    )
    assert net.count_rows == 1
    assert net.sample_rows[0]["email_key"] == "c00001@example.com"

    key = failures.pop(("monthly_revenue", "revenue_month is unique and not null"))
    assert key.sample_rows == [{"revenue_month": date(1997, 5, 1), "count_rows": 2}]

    retention = failures.pop(
        (
            "cohort_retention",
            "retention is never below 0 or above 1, and is 1 in period 0",
        )
    )
    assert retention.count_rows == 3

    # the doctored net revenue no longer adds up across marts either
    assert set(failures) == {
        (
            "monthly_revenue",
            "the months add up to the live customers' orders and net revenue",
        )
    }


# --- publishing, exporting and the command line ---------------------------

READER = r"""
import sys, duckdb
published = sys.argv[1]
con = duckdb.connect(published, read_only=True)
query = "select count(*) from marts.customer_ltv"
print(con.execute(query).fetchone()[0], flush=True)
sys.stdin.readline()
still = con.execute(query).fetchone()[0]
con.close()
fresh = duckdb.connect(published, read_only=True)
print(still, fresh.execute(query).fetchone()[0], flush=True)
"""


def test_a_reader_of_the_published_copy_never_blocks_the_warehouse(warehouse):
    published = publish_copy(warehouse)
    assert published == warehouse.with_name("efw.published.duckdb")

    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(published)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        before = int(reader.stdout.readline())

        # write the warehouse and republish while the reader holds the copy
        con = duckdb.connect(str(warehouse))
        con.execute(
            "insert into elasticfunnels.customers (email_key, _dlt_load_id, "
            "_dlt_id) values ('late@example.com', '2', 'late')"
        )
        build_models(con)
        con.close()
        assert publish_copy(warehouse) == published

        reader.stdin.write("go\n")
        reader.stdin.flush()
        still, after = map(int, reader.stdout.readline().split())
        assert reader.wait(timeout=30) == 0
    finally:
        if reader.poll() is None:
            reader.kill()

    assert (still, after) == (before, before + 1)
    assert not list(warehouse.parent.glob(".*.tmp"))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_one_file_per_mart(warehouse, tmp_path, fmt):
    out = tmp_path / "out"
    written = export_marts(warehouse, out, fmt)

    con = duckdb.connect(str(warehouse), read_only=True)
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    assert [path.name for path in written] == [f"{mart}.{fmt}" for mart in MARTS]
    for mart, path in zip(MARTS, written, strict=True):
        expected = con.execute(f"select count(*) from marts.{mart}").fetchone()
        assert (
            con.execute(f"select count(*) from {reader}('{path}')").fetchone()
            == expected
        ), mart
    con.close()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)


def efw(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="efw")
    models.add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_builds_tests_and_publishes(warehouse, capsys):
    assert efw("models", "--test", "--warehouse", str(warehouse)) == 0
    out = capsys.readouterr().out

    assert "all data tests passed" in out
    assert warehouse.with_name("efw.published.duckdb").is_file()


def test_cli_failing_data_test_exits_1_naming_rule_and_rows(warehouse, capsys):
    con = duckdb.connect(str(warehouse))
    con.execute(
        "insert into elasticfunnels.details__orders (id, date, total, status, "
        "_dlt_parent_id, _dlt_root_id, _dlt_list_idx, _dlt_id) "
        "select 'odd-1', date, total, 'pending', _dlt_parent_id, _dlt_root_id, "
        "99, 'odd' from elasticfunnels.details__orders limit 1"
    )
    con.close()

    assert efw("models", "--test", "--warehouse", str(warehouse)) == 1
    out = capsys.readouterr().out

    assert "FAIL stg_orders: status is approved, refunded, chargeback" in out
    assert "order_id=odd-1" in out
    # Which customer stays out of logs and mail.
    assert "email_key=(hidden)" in out and "@" not in out
    assert "personal data hidden" in out
    assert not warehouse.with_name("efw.published.duckdb").exists()


def test_cli_missing_warehouse_exits_2_and_says_what_to_run(tmp_path, capsys):
    missing = tmp_path / "nowhere.duckdb"

    assert efw("models", "--warehouse", str(missing)) == 2
    assert efw("export", "--format", "csv", "--warehouse", str(missing)) == 2
    err = capsys.readouterr().err

    assert str(missing) in err and "efw sync" in err and "efw demo" in err
    assert not missing.exists()


def test_cli_bad_time_zone_exits_2_naming_where_it_came_from(
    warehouse, capsys, monkeypatch
):
    assert efw("models", "--warehouse", str(warehouse), "--timezone", "Nope") == 2
    err = capsys.readouterr().err
    assert "`Nope` is unknown" in err and "fix --timezone" in err
    monkeypatch.setenv("EFW__BUSINESS_TIMEZONE", "Mars/Base")
    assert efw("models", "--warehouse", str(warehouse)) == 2
    assert "EFW__BUSINESS_TIMEZONE" in capsys.readouterr().err


@pytest.mark.parametrize("command", [("models",), ("export", "--format", "csv")])
def test_cli_warehouse_setting_not_a_duckdb_file_exits_2(
    command, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("EFW__WAREHOUSE", str(tmp_path / "x.sqlite"))

    assert efw(*command) == 2
    err = capsys.readouterr().err
    assert "x.sqlite` does not end in .duckdb" in err and "EFW__WAREHOUSE" in err


@pytest.mark.parametrize("out", ["a-file", "a-file/sub"])
def test_cli_export_into_a_folder_that_cannot_be_made_exits_2(
    out, warehouse, tmp_path, capsys
):
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / out

    command = ["export", "--format", "csv", "--warehouse", str(warehouse)]
    assert efw(*command, "--out", str(target)) == 2
    err = capsys.readouterr().err
    assert f"`{target}` cannot be created" in err and "--out" in err


def models_and_export(warehouse: Path, out: Path, capsys) -> list[tuple[int, str]]:
    """`efw models` and `efw export` on `warehouse`: each one's exit code and
    what it printed to stderr."""
    said = []
    for command in (
        ["models", "--warehouse", str(warehouse)],
        ["export", "--format", "csv", "--warehouse", str(warehouse), "--out", str(out)],
    ):
        code = efw(*command)
        said.append((code, capsys.readouterr().err))
    return said


def test_cli_a_warehouse_another_process_holds_exits_4_as_sync_does(
    warehouse, tmp_path, capsys
):
    with held_open(warehouse) as holder:
        [(models_code, models_err), (export_code, export_err)] = models_and_export(
            warehouse, tmp_path / "out", capsys
        )

    assert models_code == export_code == 4
    held = f"locked by another process (process {holder.pid})"
    assert held in models_err and "rerun `efw models`" in models_err
    assert held in export_err and "rerun `efw export`" in export_err


def test_default_warehouse_and_timezone_come_from_the_efw_settings(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("EFW__WAREHOUSE", str(tmp_path / "brand.duckdb"))
    monkeypatch.setenv("EFW__BUSINESS_TIMEZONE", "Asia/Tokyo")
    assert models.default_warehouse() == tmp_path / "brand.duckdb"
    assert models.default_business_timezone() == "Asia/Tokyo"


def test_cli_a_warehouse_a_sync_writes_says_so(warehouse, tmp_path, capsys):
    from pipelines.sync import resolve_paths, sync_lock

    with held_open(warehouse):
        with sync_lock(resolve_paths(warehouse)):
            during = models_and_export(warehouse, tmp_path / "out", capsys)
        after = models_and_export(warehouse, tmp_path / "out", capsys)

    [(models_code, models_err), (export_code, export_err)] = during
    assert models_code == export_code == 4
    writing = f"An `efw sync` is writing {warehouse} now"
    assert writing in models_err and writing in export_err
    assert "rebuilds the models and publishes the copy itself" in models_err
    published = models.published_path(warehouse)
    assert f"export now from the published copy, --warehouse {published}" in export_err
    # Once the sync has let go, the holder is some other program again.
    assert [code for code, _ in after] == [4, 4]
    assert all("locked by another process" in err for _, err in after)
