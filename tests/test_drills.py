"""Fault drills against the emulator: rate limits and outages (3), auth (4),
bad data (8), a locked warehouse (9). The nightly series (1), crashes (2),
page drift and deletions (5, 7), the result window (6) and secrets (10) have
files of their own (`test_drills_*.py`)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from pipelines.commands import EXIT_API, EXIT_CONFIG, EXIT_LOCKED, guarded
from pipelines.elasticfunnels.exceptions import (
    ApiError,
    PendingLoadFailed,
    WarehouseLocked,
)
from pipelines.elasticfunnels.records import email_key
from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator, Faults
from pipelines.sync import make_pipeline, resolve_paths, run_sync
from tests.drilling import (
    Routed,
    Watched,
    assert_same,
    copy_warehouse,
    duplicates,
    environment,
    load_ids,
    local_state,
    repeated_rows,
    snapshot,
    stored_state,
)
from tests.syncing import api_rows, query, sync

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(1997, 5, 1, 3, tzinfo=UTC)
T1 = T0 + timedelta(days=3)


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=300)


@pytest.fixture()
def em(emulator):
    """The module's emulator at T1 with faults off, put back after the test."""
    emulator.set_clock(T1)
    emulator.faults = Faults()
    emulator.reset_counts()
    yield emulator
    emulator.faults = Faults()
    emulator.set_clock(T1)


@pytest.fixture(scope="module")
def base(emulator, tmp_path_factory) -> Path:
    """A warehouse synced at T0, faults off: drills start from copies."""
    emulator.set_clock(T0)
    warehouse = tmp_path_factory.mktemp("base") / "w.duckdb"
    sync(emulator, warehouse, now=T0)
    return warehouse


@pytest.fixture(scope="module")
def clean(emulator, base, tmp_path_factory):
    """What an undisturbed incremental run at T1 makes of the base."""
    emulator.set_clock(T1)
    emulator.faults = Faults()
    warehouse = copy_warehouse(base, tmp_path_factory.mktemp("clean") / "w.duckdb")
    result = sync(emulator, warehouse, now=T1)
    assert result.run.mode == "incremental" and result.run.details_fetched > 5
    return snapshot(warehouse), stored_state(warehouse)


def from_base(base: Path, tmp_path: Path) -> Path:
    return copy_warehouse(base, tmp_path / "w.duckdb")


def waits(caplog) -> list[float]:
    """The waits before each retry, as the client logged them."""
    return [
        r.args[2]
        for r in caplog.records
        if r.name == "efw.http" and r.msg.startswith("retrying after")
    ]


# -- 3. rate limits and outages -------------------------------------------------


def one_429(emulator: Emulator):
    """A watcher that turns 429s off once the emulator has answered one."""

    def watch(request: httpx.Request, response: httpx.Response) -> None:
        if response.status_code == 429:
            emulator.faults.rate_429 = 0.0

    return watch


@pytest.mark.parametrize(
    "retry_after, low, high",
    [("0", 0.0, 0.5), ("7", 7.0, 7.5), ("date:3", 2.0, 4.0)],
    ids=["0 seconds", "7 seconds", "an HTTP date"],
)
def test_429_waits_as_long_as_retry_after_says(
    retry_after, low, high, em, base, clean, tmp_path, caplog
):
    """A 429 is retried after what `Retry-After` asks (whole seconds or an
    HTTP date), never sooner than the floor (0.01 s here); the run then
    loads exactly what an undisturbed run does."""
    caplog.set_level(logging.INFO, logger="efw.http")
    em.faults = Faults(rate_429=1.0, retry_after=retry_after)
    warehouse = from_base(base, tmp_path)
    transport = Watched(em.transport(), watch=one_429(em))

    started = time.monotonic()
    result = sync(em, warehouse, now=T1, transport=transport)
    elapsed = time.monotonic() - started

    assert em.counts[429] == 1 and result.retries == 1
    [wait] = waits(caplog)
    assert low <= wait <= high
    if retry_after == "7":
        # The one timing assertion of the drills: the wait really happened.
        assert elapsed >= 7.0
    assert_same(snapshot(warehouse), clean[0])


def test_5xx_with_html_bodies_are_retried(em, base, clean, tmp_path):
    em.faults = Faults(rate_5xx=0.25, body_5xx="html", seed=3)
    warehouse = from_base(base, tmp_path)

    result = sync(em, warehouse, now=T1)

    errors = sum(em.counts[s] for s in (500, 502, 503, 504))
    assert errors > 3 and result.retries == errors
    assert_same(snapshot(warehouse), clean[0])


def test_stalls_and_dropped_connections_over_http(em, base, clean, tmp_path):
    """Over a real loopback socket: answers that stall past the client's
    read timeout (0.5 s here) and connections closed without an answer are
    retried like any transient failure."""
    em.faults = Faults(rate_stall=0.15, stall_seconds=3, rate_drop=0.15, seed=11)
    warehouse = from_base(base, tmp_path)

    with em.serve() as base_url:
        result = run_sync(
            warehouse=warehouse,
            now=T1,
            build=False,
            base_url=base_url,
            brand=DEFAULT_BRAND,
            access_key=DEFAULT_KEY,
            timeout_seconds=0.5,
            retry_floor_seconds=0.01,
            retry_budget_seconds=20,
        )

    counts = em.counts
    assert counts["stalled"] > 0 and counts["dropped"] > 0
    assert result.retries >= counts["stalled"] + counts["dropped"]
    assert_same(snapshot(warehouse), clean[0])


def test_an_outage_fails_the_run_within_the_budget(em, base, clean, tmp_path, capsys):
    """Every request answering 503 (HTML) from the 5th on: each request
    retries for `retry_budget_seconds` (1.5 here), then the run fails with
    the API exit code and a message naming the setting; nothing is loaded,
    the cursor stays, nothing is left pending, and the next run is exact."""
    em.faults = Faults(body_5xx="html", statuses_5xx=[503])
    warehouse = from_base(base, tmp_path)
    before, loads = stored_state(warehouse), load_ids(warehouse)
    local = local_state(warehouse)
    seen = []

    def outage(request):
        # Counted as requests arrive, not as answers return: the run's
        # details go out eight at a time, and all of them could otherwise
        # be under way before the fifth answer came back.
        seen.append(request)
        if len(seen) == 5:
            em.faults.rate_5xx = 1.0

    transport = Watched(em.transport(), arrive=outage)
    code, _ = guarded(
        lambda: sync(
            em,
            warehouse,
            now=T1,
            transport=transport,
            retry_budget_seconds=1.5,
            retry_floor_seconds=0.05,
        )
    )

    message = capsys.readouterr().err
    assert code == EXIT_API == 3
    assert (
        "retrying would have run past `retry_budget_seconds` (1.5 s); "
        "last: 503 Service Unavailable" in message
    )
    assert "retry_budget_seconds" in message and "Nothing was loaded" in message
    assert em.counts[503] > 5
    assert load_ids(warehouse) == loads
    assert stored_state(warehouse) == before
    assert local_state(warehouse) == local
    assert not make_pipeline(resolve_paths(warehouse)).has_pending_data

    em.faults = Faults()
    sync(em, warehouse, now=T1)
    assert_same(snapshot(warehouse), clean[0])
    assert stored_state(warehouse) == clean[1]


def test_a_retry_after_past_the_budget_fails_at_once(em, base, tmp_path, capsys):
    """A 429 asking for ten minutes when the budget is five seconds: the run
    fails now, with the API exit code and the wait it was asked for, rather
    than sleeping past its own budget; nothing is loaded."""
    em.faults = Faults(rate_429=1.0, retry_after="600")
    warehouse = from_base(base, tmp_path)
    loads = load_ids(warehouse)

    started = time.monotonic()
    code, _ = guarded(lambda: sync(em, warehouse, now=T1, retry_budget_seconds=5))

    assert code == EXIT_API == 3
    assert time.monotonic() - started < 5
    message = capsys.readouterr().err
    assert "last: 429 Too Many Requests (it asked to wait 600 s more)" in message
    assert em.counts[429] == 1
    assert load_ids(warehouse) == loads


# -- 4. auth --------------------------------------------------------------------


AUTH = {
    "wrong key": (
        {"access_key": "wrong-key-0f9e8d"},
        True,
        ["401", "Invalid API key", "SOURCES__ELASTICFUNNELS__ACCESS_KEY"],
    ),
    "wrong brand": (
        {"brand": "999"},
        True,
        ["401", "brand `999`", "SOURCES__ELASTICFUNNELS__BRAND"],
    ),
    "no customers module": (
        {},
        False,
        ["403", "`customers` module", "SOURCES__ELASTICFUNNELS__ACCESS_KEY"],
    ),
}


@pytest.mark.parametrize("name", AUTH)
def test_auth_failures_exit_2_after_one_request(name, pristine, served_url, tmp_path):
    """`efw sync` as a user runs it, settings in SOURCES__ELASTICFUNNELS__*
    variables: a refused key, brand or module stops at the first answer with
    exit code 2 and a message naming the setting to fix, and no key."""
    settings, module_access, expected = AUTH[name]
    pristine.module_access = module_access
    env = environment(
        **{
            "base_url": served_url,
            "brand": DEFAULT_BRAND,
            "access_key": DEFAULT_KEY,
            **settings,
        }
    )
    child = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync", "--warehouse", "w.duckdb"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == EXIT_CONFIG == 2
    message = child.stderr.strip().splitlines()[-1]
    assert message.startswith("efw: The API answered")
    for part in expected:
        assert part in message
    for key in (DEFAULT_KEY, settings.get("access_key")):
        if key and key in child.stdout + child.stderr:
            pytest.fail("the access key appears in the output of `efw sync`")
    counts = pristine.counts
    assert sum(counts[r] for r in ("list", "details", "quick_access")) == 1
    assert load_ids(tmp_path / "w.duckdb") == []


SETTINGS = {
    "a key with a character no header carries": (
        {"access_key": "s\u00e9cret-key"},
        ["not printable ASCII", "SOURCES__ELASTICFUNNELS__ACCESS_KEY"],
    ),
    "a base URL without a scheme": (
        {"base_url": "127.0.0.1:8080/api"},
        ["`127.0.0.1:8080/api`", "SOURCES__ELASTICFUNNELS__BASE_URL"],
    ),
    "a timeout of zero": (
        {"timeout_seconds": 0},
        ["`timeout_seconds` is 0", "SOURCES__ELASTICFUNNELS__TIMEOUT_SECONDS"],
    ),
    "an endless timeout": (
        {"timeout_seconds": float("inf")},
        ["`timeout_seconds` is inf", "more than 0"],
    ),
    "a lookback that is not a number": (
        {"lookback_days": float("nan")},
        ["`lookback_days` is nan", "SOURCES__ELASTICFUNNELS__LOOKBACK_DAYS"],
    ),
    "a lookback past any calendar": (
        {"lookback_days": 1e12},
        ["`lookback_days` is 1000000000000.0", "0 or more and at most 3,650"],
    ),
    "a reconcile interval past any calendar": (
        {"reconcile_every_days": 1e12},
        ["`reconcile_every_days` is", "at most 3,650"],
    ),
    "a timeout no clock can hold": (
        {"timeout_seconds": 1e300},
        ["`timeout_seconds` is 1e+300", "more than 0 and at most 86,400"],
    ),
    "a negative result window": (
        {"max_result_window": -5},
        ["`max_result_window` is -5", "0 (no limit) or more"],
    ),
    "a key of spaces only": (
        {"access_key": "   "},
        ["No access key is set", "SOURCES__ELASTICFUNNELS__ACCESS_KEY"],
    ),
}


@pytest.mark.parametrize("name", SETTINGS)
def test_unusable_settings_exit_2_before_any_request(name, em, tmp_path, capsys):
    settings, expected = SETTINGS[name]
    code, _ = guarded(lambda: sync(em, tmp_path / "w.duckdb", now=T1, **settings))

    message = capsys.readouterr().err
    assert code == EXIT_CONFIG == 2
    for part in expected:
        assert part in message
    assert "cret-key" not in message
    assert sum(em.counts[r] for r in ("list", "details", "quick_access")) == 0


def test_a_key_pasted_with_spaces_around_it_works(em, base, clean, tmp_path):
    warehouse = from_base(base, tmp_path)
    sync(em, warehouse, now=T1, access_key=f" {DEFAULT_KEY}\n")
    assert em.counts[401] == 0
    assert_same(snapshot(warehouse), clean[0])


# -- 8. bad data ----------------------------------------------------------------


LIST_KINDS = ("money_string", "bad_date", "missing_email", "huge_field")


def bad(emulator: Emulator, *kinds: str) -> Emulator:
    """A second emulator over the same store that serves `kinds` of bad data."""
    return Emulator(emulator.store, faults=Faults(bad_data=kinds))


def quarantined(warehouse: Path, since: datetime) -> list[tuple]:
    return query(
        warehouse,
        "select resource, kind, email_key, reason from elasticfunnels.quarantine "
        "where found_at = ? order by reason",
        since,
    )


def test_bad_list_rows_are_quarantined_and_the_rest_loads(em, base, tmp_path):
    """Page 1 of every list query carries a money string, an unparseable
    date, a null email, a 10 MB city and a case-and-spaces twin of its first
    row. Each bad row goes to `quarantine` with its reason; the customers they
    name keep the rows loaded before and are not marked deleted; everyone
    else loads. Two more runs with the same bad data succeed too, and once
    it is fixed everything loads."""
    warehouse = from_base(base, tmp_path)
    lists = bad(em, *LIST_KINDS, "case_duplicate")
    transport = Routed(lists=lists, details=em)
    served = api_rows(em)
    first_page = sorted(served, key=lambda r: r["customer_email"])[:4]

    result = sync(em, warehouse, full=True, now=T1, transport=transport)

    run = result.run
    assert (run.quarantined, run.duplicates, run.deleted) == (5, 1, 0)
    rows = quarantined(warehouse, T1)
    assert [(r[0], r[1]) for r in rows] == [("customers", "bad_row")] * 4 + [
        ("customers", "duplicate_key")
    ]
    reasons = " | ".join(r[3] for r in rows)
    for part in (
        "`total_revenue` is not an amount: '",
        "`last_order_date` is not an ISO 8601 date: '31/02/1998 25:00'",
        "`customer_email` is missing",
        "`customer_city` is 10,485,760 characters long",
        "differs from this one only in case or spaces",
    ):
        assert part in reasons
    # Rows 0, 1 and 3 and the twin of row 0 name their customer; row 2 cannot.
    named = {r[2] for r in rows if r[2]}
    assert named == {email_key(first_page[i]["customer_email"]) for i in (0, 1, 3)}
    [(loaded, deleted)] = query(
        warehouse,
        "select count(*), count(deleted_at) from elasticfunnels.customers",
    )
    assert (loaded, deleted) == (len(served), 0)
    assert not duplicates(snapshot(warehouse))

    for _again in range(2):
        again = sync(em, warehouse, full=True, now=T1, transport=transport)
        assert again.run.quarantined == 5 and again.resumed_packages == 0
    fixed = sync(em, warehouse, full=True, now=T1)
    assert fixed.run.quarantined == 0
    assert_same(snapshot(warehouse), snapshot(_fresh_full(em, tmp_path)))


def _fresh_full(emulator: Emulator, tmp_path: Path) -> Path:
    warehouse = tmp_path / "fresh" / "w.duckdb"
    sync(emulator, warehouse, full=True, now=T1)
    return warehouse


def test_bad_rows_in_a_first_sync(em, tmp_path):
    """A first sync over bad rows loads everyone else; the next reconcile
    after the data is fixed loads the customers those rows hid."""
    warehouse = tmp_path / "w.duckdb"
    transport = Routed(lists=bad(em, *LIST_KINDS), details=em)

    result = sync(em, warehouse, now=T1, transport=transport)

    assert result.run.quarantined == 4
    [(loaded,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert loaded == len(api_rows(em)) - 4
    sync(em, warehouse, full=True, now=T1)
    assert_same(snapshot(warehouse), snapshot(_fresh_full(em, tmp_path)))


def test_bad_details_are_quarantined_and_fetched_again(em, base, clean, tmp_path):
    """Every details answer carrying a money string, a bad date and a 10 MB
    city: each is quarantined, the customers' list rows load, and the next
    run fetches those details again and loads them."""
    warehouse = from_base(base, tmp_path)
    transport = Routed(lists=em, details=bad(em, "money_string", "bad_date"))

    result = sync(em, warehouse, now=T1, transport=transport)

    run = result.run
    assert run.details_fetched == run.quarantined == clean_changed(clean, base)
    kinds = {(r[0], r[1]) for r in quarantined(warehouse, T1)}
    assert kinds == {("details", "bad_row")}

    transport = Routed(lists=em, details=bad(em, "huge_field"))
    again = sync(em, warehouse, now=T1, transport=transport)
    assert again.run.details_fetched == again.run.quarantined == run.quarantined

    fixed = sync(em, warehouse, now=T1)
    assert fixed.run.details_fetched == run.quarantined and fixed.run.quarantined == 0
    assert_same(snapshot(warehouse), clean[0])


def clean_changed(clean, base: Path) -> int:
    """How many customers the undisturbed run at T1 changed."""
    after = {r["email_key"]: r["row_hash"] for r in clean[0].rows("customers")}
    before = {r["email_key"]: r["row_hash"] for r in snapshot(base).rows("customers")}
    return sum(1 for key, value in after.items() if before.get(key) != value)


@pytest.mark.parametrize("route", ["list", "details"])
def test_html_with_status_200_is_retried_then_fails_clearly(
    route, em, base, clean, tmp_path
):
    """A maintenance page served with 200 is no answer: retried as
    transient, then the run fails (exit 3) naming what came back; nothing
    is loaded and the cursor stays."""
    warehouse = from_base(base, tmp_path)
    html = bad(em, "html_200")
    transport = Routed(lists=html, details=em)
    if route == "details":
        transport = Routed(lists=em, details=html)
    before, loads = stored_state(warehouse), load_ids(warehouse)

    with pytest.raises(ApiError) as failed:
        sync(em, warehouse, now=T1, transport=transport, retry_budget_seconds=0.5)

    assert failed.value.exit_code == EXIT_API
    assert "200 with a text/html; charset=UTF-8 body instead of JSON" in str(
        failed.value
    )
    assert stored_state(warehouse) == before and load_ids(warehouse) == loads
    sync(em, warehouse, now=T1)
    assert_same(snapshot(warehouse), clean[0])


OUT_OF_RANGE = {
    "amount past DECIMAL(14, 2)": ("total_revenue", 12345678901234567.5),
    "count past BIGINT": ("total_orders", 10**20),
    "half a surrogate pair": ("customer_city", "Sa\ud800o Paulo"),
}


@pytest.mark.parametrize("name", OUT_OF_RANGE)
def test_values_the_warehouse_cannot_hold_are_quarantined(name, em, base, tmp_path):
    """Values that pass as an amount, a count or text but that no column or
    file can hold: the row is quarantined at extract instead of failing the
    load, which would leave a package every later run fails to load."""
    field, value = OUT_OF_RANGE[name]
    warehouse = from_base(base, tmp_path)

    def rewrite(body):
        if body["data"]:
            body["data"][0][field] = value
        return body

    transport = Watched(em.transport(), rewrite=rewrite)
    result = sync(em, warehouse, full=True, now=T1, transport=transport)

    assert result.run.quarantined >= 1
    assert f"`{field}`" in quarantined(warehouse, T1)[0][3]
    later = sync(em, warehouse, now=T1)
    assert later.resumed_packages == 0 and later.run.quarantined == 0


def test_a_package_that_cannot_load_says_how_to_get_out(em, base, clean, tmp_path):
    """Whatever slips past the checks and fails the load leaves its package
    pending, and every run loads pending packages first. Such a run fails
    before any request, with a message naming the table and the command that
    drops the package; after it, the next sync ends where an undisturbed
    run does."""
    warehouse = from_base(base, tmp_path)

    def stop():
        raise RuntimeError("stopped after normalize")

    with pytest.raises(RuntimeError):
        sync(em, warehouse, now=T1, hooks={"after_normalize": stop})
    # A column of a type the package's rows do not fit, as a hand edit or
    # another tool could leave it.
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table elasticfunnels.quick_access drop all_customers")
        con.execute("alter table elasticfunnels.quick_access add all_customers date")

    for _again in range(2):
        em.reset_counts()
        code, _ = guarded(lambda: sync(em, warehouse, now=T1))
        assert code == 1 and sum(em.counts.values()) == 0
    paths = resolve_paths(warehouse)
    with pytest.raises(PendingLoadFailed) as stuck:
        sync(em, warehouse, now=T1)
    message = str(stuck.value)
    assert "a load job of table `quick_access` failed" in message
    command = f"dlt pipeline --pipelines-dir {paths.pipelines_dir} efw abort-packages"
    assert command in message

    subprocess.run(
        [str(Path(sys.executable).with_name("dlt")), *command.split()[1:]],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with duckdb.connect(str(warehouse)) as con:
        con.execute("alter table elasticfunnels.quick_access drop all_customers")
        con.execute("alter table elasticfunnels.quick_access add all_customers bigint")
    sync(em, warehouse, now=T1)
    assert_same(snapshot(warehouse), clean[0])
    assert stored_state(warehouse) == clean[1]


# -- 9. a locked warehouse --------------------------------------------------------


class Holder:
    """Another process holding the warehouse open read-only, as a BI tool or
    the duckdb shell does, until `release`."""

    def __init__(self, warehouse: Path) -> None:
        code = (
            "import duckdb, sys\n"
            f"con = duckdb.connect({str(warehouse)!r}, read_only=True)\n"
            "print('holding', flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout.readline().strip() == "holding"

    def release(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.mark.parametrize("when", ["before the run", "before change detection"])
def test_a_locked_warehouse_stops_the_run_before_any_request(
    when, em, base, clean, tmp_path, capsys
):
    """The lock bites at the first touch of the warehouse: loading what an
    earlier run left, or reading the loaded customers to see what changed,
    both before any request. Exit code 4, a message naming the lock and its
    holder, nothing changed; the next run succeeds."""
    warehouse = from_base(base, tmp_path)
    before = stored_state(warehouse)
    holders = []
    hooks = {}
    if when == "before the run":
        holders.append(Holder(warehouse))
    else:
        hooks["after_pending"] = lambda: holders.append(Holder(warehouse))
    try:
        code, _ = guarded(lambda: sync(em, warehouse, now=T1, hooks=hooks))
    finally:
        for holder in holders:
            holder.release()

    message = capsys.readouterr().err
    assert code == EXIT_LOCKED == 4
    [holder] = holders
    assert f"locked by another process (process {holder.process.pid})" in message
    assert "published copy" in message
    assert sum(em.counts.values()) == 0
    assert stored_state(warehouse) == before

    sync(em, warehouse, now=T1)
    assert_same(snapshot(warehouse), clean[0])


def test_a_lock_taken_during_the_run_keeps_what_was_extracted(
    em, base, clean, tmp_path
):
    """A reader opens the warehouse after extract: the load is refused (exit
    code 4), the extracted package stays pending with its cursor, and the
    next run loads it first, then syncs as usual: nothing lost, nothing
    fetched twice."""
    warehouse = from_base(base, tmp_path)
    before = stored_state(warehouse)
    holders = []

    with pytest.raises(WarehouseLocked) as locked:
        sync(
            em,
            warehouse,
            now=T1,
            hooks={"after_extract": lambda: holders.append(Holder(warehouse))},
        )
    holders[0].release()

    assert locked.value.exit_code == EXIT_LOCKED
    assert "anything this run extracted is kept" in str(locked.value)
    assert stored_state(warehouse) == before
    assert make_pipeline(resolve_paths(warehouse)).has_pending_data
    fetched = em.counts["details"]

    em.reset_counts()
    rerun = sync(em, warehouse, now=T1)
    assert rerun.resumed_packages == 1
    assert em.counts["details"] == 0 < fetched
    assert_same(snapshot(warehouse), clean[0])
    assert stored_state(warehouse) == clean[1]
    assert not repeated_rows(warehouse)


def test_a_lock_taken_before_the_models_are_built(em, base, clean, tmp_path):
    """A reader opens the warehouse once the data is loaded: the run fails
    with the locked exit code and says the data is in; the next run builds
    the models."""
    warehouse = from_base(base, tmp_path)
    holders = []

    with pytest.raises(WarehouseLocked) as locked:
        sync(
            em,
            warehouse,
            now=T1,
            build=True,
            hooks={"after_load": lambda: holders.append(Holder(warehouse))},
        )
    holders[0].release()

    assert locked.value.exit_code == EXIT_LOCKED
    assert "this run's data is loaded, but the models were not rebuilt" in str(
        locked.value
    )
    assert_same(snapshot(warehouse), clean[0])
    result = sync(em, warehouse, now=T1, build=True)
    assert result.models and result.published is not None
