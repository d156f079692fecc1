"""The demo's job end to end: every CDNOW customer and lead, through the sync,
into the models, checked against the raw CDNOW file and the emulator."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from pipelines import models
from pipelines.emulator import Emulator
from tests import cdnow_expected as expected
from tests.syncing import api_rows, money, query, sync

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow()


@pytest.fixture(scope="module")
def demo(emulator, tmp_path_factory):
    """A full sync of the whole CDNOW set, models built, as `efw demo` does."""
    warehouse = tmp_path_factory.mktemp("demo") / "warehouse.duckdb"
    emulator.reset_counts()
    result = sync(emulator, warehouse, build=True)
    return warehouse, result


@pytest.fixture(scope="module")
def purchases():
    return expected.read_cdnow(expected.find_cdnow_master())


def test_loads_every_customer_and_lead_with_details(emulator, demo):
    warehouse, result = demo
    served = api_rows(emulator)
    counts = emulator.store.quick_access()
    assert len(served) == counts["all"] == 23_570 + counts["abandons"]
    assert result.run.new == len(served)

    [(customers, leads, revenue, ltv)] = query(
        warehouse,
        "select count(*), count(*) filter (where total_orders = 0), "
        "sum(total_revenue), sum(lifetime_value) from elasticfunnels.customers",
    )
    assert (customers, leads) == (counts["all"], counts["abandons"])
    assert revenue == sum(money(r["total_revenue"]) for r in served)
    assert ltv == sum(money(r["lifetime_value"]) for r in served)

    [(details,)] = query(warehouse, "select count(*) from elasticfunnels.details")
    assert details == len(served) == emulator.counts["details"]
    orders = subscriptions = 0
    for row in served:
        body = emulator.store.details(row["customer_email"])
        orders += len(body["orders"])
        subscriptions += len(body["subscriptions"])
    assert query(warehouse, "select count(*) from elasticfunnels.details__orders") == [
        (orders,)
    ]
    assert query(
        warehouse, "select count(*) from elasticfunnels.details__subscriptions"
    ) == [(subscriptions,)]


def test_warehouse_revenue_equals_the_raw_file(demo, purchases):
    warehouse, _ = demo
    [(gross,)] = query(
        warehouse,
        "select sum(total) from elasticfunnels.details__orders "
        "where status <> 'abandoned'",
    )
    assert gross == sum(p.dollar_value for p in purchases)


def test_second_run_right_away_fetches_no_details(emulator, demo):
    warehouse, _ = demo
    emulator.reset_counts()
    again = sync(emulator, warehouse)
    assert again.run.mode == "incremental"
    assert emulator.counts["details"] == 0
    assert again.run.new == again.run.changed == 0
    # The newest-first scan reads down to the first customer older than the
    # cursor minus the two-day lookback. 108 CDNOW customers bought in the
    # last two days of the data, and a page holds 100: two pages.
    [(recent,)] = query(
        warehouse,
        "select count(*) from elasticfunnels.customers where last_order_date >= "
        "(select max(last_order_date) from elasticfunnels.customers) "
        "- interval 2 day",
    )
    assert recent == 108
    assert emulator.counts["list"] == recent // 100 + 1 == 2


def test_cohorts_match_the_raw_file(demo, purchases):
    warehouse, _ = demo
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sizes = dict(
            con.execute(
                "select cohort_month, max(cohort_size) from marts.cohort_retention "
                "group by 1"
            ).fetchall()
        )
        gross = {
            (cohort, month): value
            for cohort, month, value in con.execute(
                "select cohort_month, activity_month, gross_revenue "
                "from marts.cohort_retention where gross_revenue <> 0"
            ).fetchall()
        }
        retention = {
            (cohort, period): rate
            for cohort, period, rate in con.execute(
                "select cohort_month, period_number, retention_rate "
                "from marts.cohort_retention where period_number < 12"
            ).fetchall()
        }
    assert sizes == expected.expected_cohort_sizes(purchases)
    want = expected.expected_gross_by_cohort_and_month(purchases)
    assert {k: Decimal(v) for k, v in gross.items()} == {
        k: v for k, v in want.items() if v != 0
    }
    want_retention = expected.expected_retention(purchases, periods=12)
    assert retention.keys() == want_retention.keys()
    for key, rate in want_retention.items():
        assert float(retention[key]) == pytest.approx(rate, abs=1e-9), key


def test_api_lifetime_value_agrees_and_data_tests_pass(demo):
    warehouse, _ = demo
    assert query(warehouse, "select count(*) from marts.ltv_check") == [(0,)]
    with duckdb.connect(str(warehouse)) as con:
        assert models.run_data_tests(con) == []


def test_published_copy_has_the_marts(demo):
    warehouse, result = demo
    assert result.published is not None and result.published.exists()
    assert query(result.published, "select count(*) from marts.customer_ltv") == (
        query(warehouse, "select count(*) from marts.customer_ltv")
    )


def test_every_query_the_demo_prints_runs(demo, capsys):
    import re

    from pipelines.cli import main
    from pipelines.commands import DEMO_QUERIES

    warehouse, _ = demo
    printed = DEMO_QUERIES.format(
        published=models.published_path(warehouse), warehouse=warehouse
    )
    statements = re.findall(r'"(select [^"]+)"', printed)
    assert len(statements) == 3
    for sql in statements:
        capsys.readouterr()
        assert main(["query", "--warehouse", str(warehouse), sql]) == 0
        out = capsys.readouterr().out
        # A result table with rows: DuckDB prints the row count under it.
        assert re.search(r"\b[1-9]\d* rows\b", out), out[-300:]
