"""Drill 2: a sync killed anywhere (SIGKILL) and run again loses nothing,
doubles nothing, and never leaves the cursor ahead of the data."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator
from pipelines.sync import make_pipeline, resolve_paths, run_sync
from tests.drilling import (
    assert_same,
    copy_warehouse,
    cursor,
    duplicates,
    environment,
    local_state,
    newest_loaded_order,
    per_load_counts,
    repeated_rows,
    snapshot,
    stored_state,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(1997, 3, 1, 3, tzinfo=UTC)
T1 = T0 + timedelta(days=10)
SOURCE = {
    "per_page": 20,
    "reconcile_every_days": 28,
    "retry_floor_seconds": 0.01,
    "retry_budget_seconds": 20.0,
}

# Where the child dies, in order when a drill kills more than one child:
# (point, how many pages / details / jobs to let through first); and whether
# the killed run is a reconcile (`--full`) rather than an incremental one.
POINTS = {
    "extract: after 2 list pages": ([("list_pages", 2)], False),
    "extract: mid-details": ([("details", 10)], False),
    "extract: mid-details of a reconcile": ([("details", 15)], True),
    "after extract": ([("after_extract", 1)], False),
    "after normalize": ([("after_normalize", 1)], False),
    "load: after the first job is recorded": ([("job_recorded", 1)], False),
    "load: after 4 jobs of a reconcile": ([("job_recorded", 4)], True),
    "load: orders written, job not recorded": (
        [("rows_written:details__orders", 1)],
        False,
    ),
    "load: counts written, job not recorded": (
        [("rows_written:quick_access", 1)],
        False,
    ),
    "after load": ([("after_load", 1)], False),
    "after normalize, then again while resuming that load": (
        [("after_normalize", 1), ("rows_written:details", 1)],
        False,
    ),
}


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=600)


@pytest.fixture(scope="module")
def served(emulator):
    emulator.set_clock(T0)
    with emulator.serve() as base_url:
        yield base_url


@pytest.fixture(scope="module")
def base(served, emulator, tmp_path_factory) -> Path:
    """A warehouse synced at T0; each drill starts from a copy of it."""
    warehouse = tmp_path_factory.mktemp("base") / "w.duckdb"
    emulator.set_clock(T0)
    _sync(served, warehouse, T0)
    return warehouse


@pytest.fixture(scope="module")
def reference(base, served, emulator, tmp_path_factory):
    """Where an uninterrupted run at T1 leaves the base, for each mode."""
    emulator.set_clock(T1)
    out = {}
    for full in (False, True):
        warehouse = copy_warehouse(
            base, tmp_path_factory.mktemp("reference") / "w.duckdb"
        )
        result = _sync(served, warehouse, T1, full=full)
        assert result.run.mode == ("full" if full else "incremental")
        assert result.run.details_fetched > 20
        out[full] = (snapshot(warehouse), stored_state(warehouse))
    return out


def _sync(base_url: str, warehouse: Path, now: datetime, full: bool = False):
    return run_sync(
        full=full,
        warehouse=warehouse,
        now=now,
        build=False,
        base_url=base_url,
        brand=DEFAULT_BRAND,
        access_key=DEFAULT_KEY,
        **SOURCE,
    )


def kill_child(base_url: str, warehouse: Path, point: str, after: int, full: bool):
    """Runs the sync in a child that SIGKILLs itself at `point`."""
    spec = {
        "point": point,
        "after": after,
        "warehouse": str(warehouse),
        "now": T1.isoformat(),
        "full": full,
        "source": {"base_url": base_url, "brand": DEFAULT_BRAND, **SOURCE},
    }
    child = subprocess.run(
        [sys.executable, "-m", "tests.crash_child", json.dumps(spec)],
        cwd=ROOT,
        env=environment(access_key=DEFAULT_KEY),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def assert_cursor_not_ahead(warehouse: Path) -> None:
    """The cursor the warehouse stores is never past the orders it holds; a
    working-folder cursor that is ahead travels in a package still pending."""
    stored = cursor(stored_state(warehouse))
    newest = newest_loaded_order(warehouse)
    assert stored is not None and newest is not None
    assert stored <= newest
    local = cursor(local_state(warehouse))
    if local is not None and local > stored:
        assert make_pipeline(resolve_paths(warehouse)).has_pending_data


@pytest.mark.parametrize("name", POINTS)
def test_killed_sync_reruns_exactly(name, base, reference, served, emulator, tmp_path):
    kills, full = POINTS[name]
    emulator.set_clock(T1)
    warehouse = copy_warehouse(base, tmp_path / "w.duckdb")

    for point, after in kills:
        kill_child(served, warehouse, point, after, full)

        assert not duplicates(snapshot(warehouse))
        assert not repeated_rows(warehouse)
        assert_cursor_not_ahead(warehouse)

    rerun = _sync(served, warehouse, T1, full=full)
    rerun_rows = snapshot(warehouse)
    expected_rows, expected_state = reference[full]
    assert_same(rerun_rows, expected_rows)
    assert not duplicates(rerun_rows)
    assert not repeated_rows(warehouse)
    assert stored_state(warehouse) == expected_state
    assert_cursor_not_ahead(warehouse)
    # One row of counts per load: a job run twice would show two.
    assert set(per_load_counts(warehouse, "quick_access").values()) == {1}
    # Killed after extract and before the load finished, the run leaves its
    # package for the next one, which loads it before extracting anew.
    unloaded = kills[-1][0] not in ("list_pages", "details", "after_load")
    assert rerun.resumed_packages == (1 if unloaded else 0)
