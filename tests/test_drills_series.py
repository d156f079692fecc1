"""Drill 1: a series of nightly syncs ends where one full sync of the same
instant does, row for row, with faults off and with faults on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipelines.emulator import Emulator, Faults
from tests.drilling import assert_same, duplicates, snapshot
from tests.syncing import api_rows, sync

pytestmark = pytest.mark.slow

WEEK = timedelta(days=7).total_seconds()
RECONCILE_EVERY_DAYS = 28
#: Every fourth night is a scheduled reconcile; 4k + 1 nights end on one.
NIGHTS = 29


def faults_on() -> Faults:
    return Faults(
        latency_ms=1,
        jitter_ms=4,
        rate_429=0.04,
        retry_after="0",
        rate_5xx=0.04,
        body_5xx="html",
        visibility_delay_seconds=6 * 3600,
        seed=7,
    )


SERIES = {
    # The CDNOW customers of the subset arrive in January 1997 and buy most
    # in their first months: this stretch holds the most new customers and
    # the most orders per night.
    "faults_off_1997": (datetime(1997, 1, 8, 3, tzinfo=timezone.utc), Faults),
    # The last orders (June 1998) and the refunds and chargebacks that follow
    # them until 1998-09-01, which only a reconcile sees. The series ends
    # after them, once the delayed list shows everything the details do.
    "faults_on_1998": (datetime(1998, 2, 18, 3, tzinfo=timezone.utc), faults_on),
}


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=200)


@pytest.mark.parametrize("name", SERIES)
def test_nightly_syncs_equal_one_full_sync(emulator, tmp_path, name):
    """29 syncs a week apart, each with the run clock pinned to the emulator's
    (`now=`), every fourth one a scheduled reconcile (`reconcile_every_days`
    28): the other 21 are incremental and see only customers whose
    `last_order_date` moved. The last night is a reconcile, and only then is
    the claim true: refunds and chargebacks on old orders and new leads reach
    the warehouse at the next reconcile, not the next night. So the warehouse
    after the last night must equal, row for row, one full sync of a fresh
    warehouse at the same instant, under the same faults.

    Two stretches cover 1997-1998 between them, 1997 with faults off and 1998
    with 429s, HTML 5xx, latency and a six-hour visibility delay on the list.
    The delay makes the list lag the details; a comparison is only fair once
    the list has caught up, which the 1998 series reaches by running past the
    last event of the data set (1998-09-01)."""
    start, make_faults = SERIES[name]
    emulator.faults = make_faults()
    emulator.set_clock(start)
    emulator.reset_counts()
    nightly = tmp_path / "nightly.duckdb"

    runs = []
    for night in range(NIGHTS):
        if night:
            emulator.advance(WEEK)
        result = sync(
            emulator,
            nightly,
            now=emulator.as_of,
            reconcile_every_days=RECONCILE_EVERY_DAYS,
        )
        runs.append(result)
    served = len(api_rows(emulator))
    full = sync(emulator, tmp_path / "full.duckdb", full=True, now=emulator.as_of)

    modes = [r.run.mode for r in runs]
    assert modes == ["full", "incremental", "incremental", "incremental"] * 7 + ["full"]
    incremental = [r.run for r in runs if r.run.mode == "incremental"]
    assert all(r.listed < served for r in incremental)
    assert sum(r.details_fetched for r in incremental) > 0
    assert full.run.listed == served > 200

    nightly_rows = snapshot(nightly)
    assert_same(nightly_rows, snapshot(tmp_path / "full.duckdb"))
    assert not duplicates(nightly_rows)
    assert nightly_rows.count("customers") == served
    assert nightly_rows.count("details__orders") > nightly_rows.count("customers")
    assert nightly_rows.count("details__subscriptions") > 0
    if emulator.faults.rate_429:
        counts = emulator.counts
        assert sum(r.retries for r in runs) > 0
        assert counts[429] > 0 and sum(counts[s] for s in (500, 502, 503, 504)) > 0
