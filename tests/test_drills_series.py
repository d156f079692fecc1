"""Drill 1: a series of nightly syncs ends where one full sync of the same
instant does, row for row, with faults off and with faults on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.emulator import Emulator, Faults
from tests.drilling import assert_same, duplicates, snapshot
from tests.syncing import api_rows, sync

pytestmark = pytest.mark.slow

WEEK = timedelta(days=7).total_seconds()
RECONCILE_EVERY_DAYS = 28
#: The first night, three weeks into the subset's first purchases.
FIRST = datetime(1997, 1, 22, 3, tzinfo=UTC)
#: 85 nights a week apart end on 1998-09-02, after the data set's last event
#: (a chargeback before 1998-09-01). Every fourth night is a reconcile, so
#: the first and the last are.
NIGHTS = 85


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


# Faults, and the nights after which the warehouse must equal a full sync.
# With the visibility delay the list lags the details, so the comparison is
# only fair once the list has caught up: after the last event.
SERIES = {
    "faults off": (Faults, (40, NIGHTS - 1)),
    "429, 5xx, latency, visibility delay": (faults_on, (NIGHTS - 1,)),
}


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=200)


@pytest.mark.parametrize("name", SERIES)
def test_nightly_syncs_equal_one_full_sync(emulator, tmp_path, name):
    """85 syncs a week apart from 1997-01-22 to 1998-09-02, each with the
    run clock pinned to the emulator's (`now=`), every fourth a scheduled
    reconcile (`reconcile_every_days` 28): the other 63 are incremental and
    see only customers whose `last_order_date` moved. Compared right after a
    scheduled reconcile, because only then is the claim true: refunds and
    chargebacks on old orders and new leads reach the warehouse at the next
    reconcile, not the next night. There the warehouse must equal, row for
    row, one full sync of a fresh warehouse at the same instant, under the
    same faults.

    Faults off, the comparison is made in the middle of the series too.
    With 429s, HTML 5xx, latency and a six-hour visibility delay on the list,
    only at the end: the delayed list shows orders late while the details
    show them at once, so a fresh full sync fetches details the nightly one
    rightly waits to fetch until the list shows the change. After the last
    event of the data set both have seen everything."""
    make_faults, checkpoints = SERIES[name]
    emulator.faults = make_faults()
    emulator.set_clock(FIRST)
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
        runs.append(result.run)
        if night not in checkpoints:
            continue
        assert result.run.mode == "full"
        served = len(api_rows(emulator))
        full = tmp_path / f"full-{night}.duckdb"
        assert sync(emulator, full, full=True, now=emulator.as_of).run.listed == served
        nightly_rows = snapshot(nightly)
        assert_same(nightly_rows, snapshot(full))
        assert not duplicates(nightly_rows)
        assert nightly_rows.count("customers") == served > 200
        assert nightly_rows.count("details__orders") > served

    modes = [r.mode for r in runs]
    assert modes == (["full"] + ["incremental"] * 3) * 21 + ["full"]
    incremental = [r for r in runs if r.mode == "incremental"]
    assert all(r.listed < served for r in incremental)
    assert sum(1 for r in incremental if r.details_fetched) > 30
    assert snapshot(nightly).count("details__subscriptions") > 0
    if emulator.faults.rate_429:
        counts = emulator.counts
        assert sum(r.http.retries for r in runs) > 0
        assert counts[429] > 0 and sum(counts[s] for s in (500, 502, 503, 504)) > 0
