"""Drills 5 and 7: the list changing under a scan (page drift), and customers
the source no longer lists (deleted), through to the SQL models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines import models
from pipelines.elasticfunnels.exceptions import ApiError
from pipelines.elasticfunnels.records import email_key
from pipelines.emulator import Emulator, Faults
from pipelines.sync import make_pipeline, resolve_paths
from tests.drilling import (
    Watched,
    assert_same,
    cursor,
    duplicates,
    load_ids,
    snapshot,
    stored_state,
)
from tests.syncing import api_rows, query, sync

pytestmark = pytest.mark.slow

HOUR = 3600.0
DAY = 86_400.0
#: Follow-up runs stay incremental: the next reconcile is not due.
NO_RECONCILE = {"reconcile_every_days": 60}


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=1000)


@pytest.fixture()
def fresh(emulator):
    yield emulator
    emulator.faults = Faults()
    emulator.reset_counts()


def listed_now(emulator: Emulator) -> dict[str, str | None]:
    return {r["customer_email"]: r["last_order_date"] for r in api_rows(emulator)}


def stale_buyers(emulator: Emulator, warehouse) -> list[str]:
    """Buyers whose loaded `last_order_date` is not the one the list shows."""
    loaded = dict(
        query(
            warehouse,
            "select customer_email, strftime(last_order_date at time zone 'UTC', "
            "'%Y-%m-%dT%H:%M:%SZ') from elasticfunnels.customers",
        )
    )
    return [
        email
        for email, date in listed_now(emulator).items()
        if date is not None and loaded.get(email) != date
    ]


# -- 5. page drift ------------------------------------------------------------


DRIFTS = {
    # Early January 1997: the subset's customers are still arriving, and
    # every newcomer pushes the rows after it down the email order.
    "new customers during a reconcile": (datetime(1997, 1, 3, 3), HOUR, {}),
    # June 1997: hardly anyone new, but orders all month; the scan spans
    # weeks of them, rows read late show orders that rows read early do not.
    "orders during a reconcile": (datetime(1997, 6, 3, 3), 4 * HOUR, {}),
    # A window of 200 splits the scan by type, then by email domain: leads
    # who buy move from one type to the other while it pages.
    "both during a split reconcile": (
        datetime(1997, 1, 3, 3),
        3 * HOUR,
        {"max_result_window": 200},
    ),
}


@pytest.mark.parametrize("name", DRIFTS)
def test_page_drift_during_a_reconcile(name, fresh, tmp_path):
    """With the emulator's clock moving after every list page (10 rows a
    page, so the scan of ~100 pages spans days), the reconcile loses nobody
    listed when it started, keeps nobody twice, and stores as cursor the
    newest order listed at its start, so the next incremental run reads
    every order placed during the scan. A full reconcile afterwards equals
    a fresh full sync."""
    start, drift, settings = DRIFTS[name]
    start = start.replace(tzinfo=UTC)
    fresh.set_clock(start)
    at_start = listed_now(fresh)
    newest_at_start = max(d for d in at_start.values() if d is not None)
    fresh.faults = Faults(page_drift_seconds=drift)
    warehouse = tmp_path / "w.duckdb"

    result = sync(fresh, warehouse, per_page=10, now=start, **settings)

    run, at_end = result.run, listed_now(fresh)
    fresh.faults = Faults()
    assert run.mode == "full" and run.pages > 90
    assert fresh.as_of >= start + timedelta(seconds=90 * drift)
    # Numbers: the list grew under the scan; the scan read everyone listed at
    # its start, some newcomers, no one twice.
    assert len(at_start) <= run.listed <= len(at_end)
    loaded = snapshot(warehouse)
    assert not duplicates(loaded)
    keys = {r["customer_email"] for r in loaded.rows("customers")}
    assert set(at_start) <= keys
    assert len(keys) == run.listed == run.new == run.details_fetched
    assert fresh.counts["details"] == run.details_fetched
    assert cursor(stored_state(warehouse)) == datetime.fromisoformat(newest_at_start)

    # The next night, drift off: every order placed during the scan arrives.
    fresh.advance(DAY)
    follow = sync(fresh, warehouse, per_page=10, now=fresh.as_of, **NO_RECONCILE)
    assert follow.run.mode == "incremental"
    assert stale_buyers(fresh, warehouse) == []

    # Newcomers the scan passed by and leads wait for the next reconcile.
    sync(fresh, warehouse, full=True, now=fresh.as_of)
    sync(fresh, tmp_path / "full.duckdb", full=True, now=fresh.as_of)
    assert_same(snapshot(warehouse), snapshot(tmp_path / "full.duckdb"))


def test_page_drift_during_incremental_runs(fresh, tmp_path):
    """Customers who buy while an incremental scan pages the list (newest
    first) jump to its front, behind the scan: the rows after them move down
    a place, so a row is read twice, never skipped. Every night of a week
    with drift on, nobody is kept twice; the next night without drift finds
    every order placed meanwhile."""
    start = datetime(1997, 6, 3, 3, tzinfo=UTC)
    fresh.set_clock(start)
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse, now=start)

    for _night in range(7):
        fresh.advance(DAY)
        fresh.faults = Faults(page_drift_seconds=2 * HOUR)
        fresh.reset_counts()
        result = sync(fresh, warehouse, per_page=2, now=fresh.as_of, **NO_RECONCILE)
        fresh.faults = Faults()
        assert result.run.mode == "incremental" and result.run.pages >= 2
        assert fresh.counts["details"] == result.run.details_fetched
        assert not duplicates(snapshot(warehouse))

    fresh.advance(DAY)
    sync(fresh, warehouse, now=fresh.as_of, **NO_RECONCILE)
    assert stale_buyers(fresh, warehouse) == []


def hide_once(email: str, passes: int):
    """Leaves `email` out of the first `passes` list pages that hold it, as
    a row that moved up past the scan when a customer before it left."""
    hidden = []

    def rewrite(body):
        rows = [r for r in body["data"] if r.get("customer_email") != email]
        if len(rows) < len(body["data"]) and len(hidden) < passes:
            hidden.append(email)
            body["data"] = rows
        return body

    return rewrite, hidden


def test_a_missed_row_means_a_rescan_or_a_failure(fresh, tmp_path):
    """The reconcile counts the distinct customers it read against the total
    the list reported: one short, it reads the list again; still short after
    three reads, it fails, loads nothing and leaves the cursor where it was.
    The emulator only adds customers, so a transport hides one list row, as
    when a customer before it leaves the list while the scan passes."""
    start = datetime(1997, 6, 3, 3, tzinfo=UTC)
    fresh.set_clock(start)
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse, now=start)
    # A lead: no order date, so never among the newest the scan asks for.
    listed = listed_now(fresh)
    email = sorted(e for e, date in listed.items() if date is None)[0]

    rewrite, hidden = hide_once(email, passes=1)
    transport = Watched(fresh.transport(), rewrite=rewrite)
    result = sync(fresh, warehouse, full=True, now=start, transport=transport)
    assert hidden == [email] and result.run.rescans == 1
    assert result.run.deleted == 0

    later = start + timedelta(days=7)
    fresh.set_clock(later)
    total = len(listed_now(fresh))
    loads, before = load_ids(warehouse), stored_state(warehouse)
    rewrite, hidden = hide_once(email, passes=3)
    transport = Watched(fresh.transport(), rewrite=rewrite)
    with pytest.raises(ApiError, match="changed under three scans") as failed:
        sync(fresh, warehouse, full=True, now=later, transport=transport)
    assert hidden == [email] * 3
    assert f"{total - 1} distinct customers seen, {total} listed" in str(failed.value)
    assert failed.value.exit_code == 3
    assert load_ids(warehouse) == loads
    assert stored_state(warehouse) == before
    assert not make_pipeline(resolve_paths(warehouse)).has_pending_data


# -- 7. deleted at the source -------------------------------------------------


def test_deleted_customers_are_flagged_and_left_out(fresh, tmp_path):
    """Customers the reconcile no longer finds get `deleted_at`; the models
    keep them in `customer_ltv` flagged `is_deleted` and leave them out of
    cohorts, retention, RFM, monthly revenue and `ltv_check`."""
    now = datetime(1997, 1, 20, 3, tzinfo=UTC)
    fresh.set_clock(now)
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse, now=now)
    # Turning the clock back unmakes the customers who arrived since: to the
    # reconcile they are gone from the API.
    earlier = now - timedelta(days=10)
    gone = set(listed_now(fresh))
    fresh.set_clock(earlier)
    gone -= set(listed_now(fresh))
    result = sync(fresh, warehouse, full=True, now=now)
    assert result.run.deleted == len(gone) > 20

    pipeline = make_pipeline(resolve_paths(warehouse))
    with pipeline.sql_client() as client:
        models.build_models(client.native_connection)

    def keys(sql: str) -> set[str]:
        return {k for (k,) in query(warehouse, sql)}

    deleted = keys(
        "select email_key from elasticfunnels.customers where deleted_at is not null"
    )
    assert deleted == {email_key(e) for e in gone}
    assert keys("select email_key from marts.customer_ltv where is_deleted") == deleted
    live_buyers = keys(
        "select email_key from marts.customer_ltv "
        "where not is_deleted and count_orders > 0"
    )
    assert not deleted & keys("select email_key from marts.rfm_segments")
    assert keys("select email_key from marts.rfm_segments") == live_buyers
    assert not deleted & keys("select email_key from marts.ltv_check")
    [(cohort_members,)] = query(
        warehouse,
        "select sum(cohort_size) from marts.cohort_retention where period_number = 0",
    )
    assert cohort_members == len(live_buyers)
    [(ltv_members,)] = query(warehouse, "select sum(cohort_size) from marts.cohort_ltv")
    assert ltv_members == len(live_buyers)
    [(monthly_net, live_net)] = query(
        warehouse,
        "select (select sum(net_revenue) from marts.monthly_revenue), "
        "(select sum(net_revenue) from marts.customer_ltv where not is_deleted)",
    )
    assert monthly_net == live_net
