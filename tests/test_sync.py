"""The nightly sync against the emulator: what loads, what is fetched, and when."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from dlt.common.configuration.exceptions import ConfigValueCannotBeCoercedException

from pipelines.cli import main
from pipelines.commands import EXIT_CONFIG, EXIT_INTERRUPTED, guarded, sync_command
from pipelines.dlt_defaults import DLT_DEFAULTS
from pipelines.elasticfunnels import SyncRun
from pipelines.elasticfunnels.client import ApiClient, TransientError, quote_email
from pipelines.elasticfunnels.exceptions import (
    ApiError,
    AuthError,
    ConfigurationError,
    WarehouseLocked,
)
from pipelines.elasticfunnels.records import email_key
from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator
from pipelines.sync import (
    WarehouseCustomers,
    make_pipeline,
    normalize_workers,
    resolve_paths,
    sync_lock,
    sync_running,
    translate,
)
from tests.drilling import Watched
from tests.syncing import FAST_RETRIES, api_rows, money, query, sync

MID_1997 = datetime(1997, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=1500)


@pytest.fixture()
def fresh(emulator: Emulator) -> Emulator:
    emulator.set_clock(MID_1997)
    emulator.reset_counts()
    return emulator


def test_first_sync_loads_every_customer_with_details(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    result = sync(fresh, warehouse)

    served = api_rows(fresh)
    assert result.run.mode == "full"
    assert result.run.new == len(served) > 1000
    assert fresh.counts["details"] == len(served)
    assert result.run.details_fetched == len(served)

    [(count, revenue, refunds, ltv)] = query(
        warehouse,
        "select count(*), sum(total_revenue), sum(total_refunds), "
        "sum(lifetime_value) from elasticfunnels.customers",
    )
    assert count == len(served)
    assert revenue == sum(money(r["total_revenue"]) for r in served)
    assert refunds == sum(money(r["total_refunds"]) for r in served)
    assert ltv == sum(money(r["lifetime_value"]) for r in served)

    # Every order of every customer, with its products, as the details say.
    expected_orders = expected_products = expected_subs = 0
    expected_total = money(0)
    for row in served:
        details = fresh.store.details(row["customer_email"])
        expected_orders += len(details["orders"])
        expected_products += sum(len(o["products"]) for o in details["orders"])
        expected_total += sum(money(o["total"]) for o in details["orders"])
        expected_subs += len(details["subscriptions"])
    [(orders, order_total)] = query(
        warehouse, "select count(*), sum(total) from elasticfunnels.details__orders"
    )
    assert (orders, order_total) == (expected_orders, expected_total)
    [(products,)] = query(
        warehouse, "select count(*) from elasticfunnels.details__orders__products"
    )
    assert products == expected_products
    [(subs,)] = query(
        warehouse, "select count(*) from elasticfunnels.details__subscriptions"
    )
    assert subs == expected_subs > 0

    [(all_customers,)] = query(
        warehouse, "select all_customers from elasticfunnels.quick_access"
    )
    assert all_customers == len(served)


def test_second_run_right_away_fetches_no_details(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    fresh.reset_counts()

    again = sync(fresh, warehouse)

    assert again.run.mode == "incremental"
    assert fresh.counts["details"] == 0
    assert again.run.new == again.run.changed == 0
    assert fresh.counts["list"] == 1
    [(loads,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert loads == len(api_rows(fresh))


def test_a_day_later_only_changed_customers_get_details(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    before = {r["customer_email"]: r for r in api_rows(fresh)}

    fresh.advance(timedelta(days=1).total_seconds())
    fresh.reset_counts()
    result = sync(fresh, warehouse)

    after = {r["customer_email"]: r for r in api_rows(fresh)}
    bought = {
        email
        for email, row in after.items()
        if row["last_order_date"] is not None
        and before.get(email, {}).get("last_order_date") != row["last_order_date"]
    }
    assert bought, "the emulator should show purchases on an ordinary day"
    assert result.run.mode == "incremental"
    assert fresh.counts["details"] == len(bought) == result.run.details_fetched
    [(loaded,)] = query(
        warehouse,
        "select count(*) from elasticfunnels.customers where synced_at = ?",
        result.run.started_at,
    )
    assert loaded == len(bought)


def test_emails_round_trip_exactly(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    served = [r["customer_email"] for r in api_rows(fresh)]
    shapes = {
        "plus": [e for e in served if "+" in e],
        "slash": [e for e in served if "/" in e],
        "percent": [e for e in served if "%" in e],
        "mixed case": [e for e in served if e != e.lower()],
        "non-ascii": [e for e in served if not e.isascii()],
    }
    assert all(shapes.values()), {k: len(v) for k, v in shapes.items()}

    stored = dict(
        query(
            warehouse,
            "select c.customer_email, d.email from elasticfunnels.customers c "
            "join elasticfunnels.details d using (email_key)",
        )
    )
    for emails in shapes.values():
        for email in emails:
            assert stored[email] == email
    keys = {
        k for (k,) in query(warehouse, "select email_key from elasticfunnels.customers")
    }
    assert keys == {email_key(e) for e in served}


def test_path_segment_quoting_keeps_nothing_safe():
    assert quote_email("a+b/c%d@x.com") == "a%2Bb%2Fc%25d%40x.com"
    assert quote_email("josé@x.com") == quote("josé@x.com", safe="")


def test_reconcile_marks_vanished_customers_and_drops_removed_orders(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    # Turning the clock back removes the customers who first appeared in the
    # last days, and the last orders of others: as if the source deleted them.
    fresh.set_clock(MID_1997 - timedelta(days=10))
    gone = {r["customer_email"] for r in api_rows(fresh)}
    fresh.set_clock(MID_1997)
    vanished = {r["customer_email"] for r in api_rows(fresh)} - gone
    fresh.set_clock(MID_1997 - timedelta(days=10))

    result = sync(fresh, warehouse, full=True)

    assert result.run.deleted == len(vanished) > 0
    marked = {
        e
        for (e,) in query(
            warehouse,
            "select customer_email from elasticfunnels.customers "
            "where deleted_at is not null",
        )
    }
    assert marked == vanished
    [(late_orders,)] = query(
        warehouse,
        "select count(*) from elasticfunnels.details__orders o "
        "join elasticfunnels.details d on o._dlt_root_id = d._dlt_id "
        "join elasticfunnels.customers c using (email_key) "
        "where c.deleted_at is null and o.date > ?",
        MID_1997 - timedelta(days=10),
    )
    assert late_orders == 0

    # Back on the list: no longer deleted.
    fresh.set_clock(MID_1997)
    sync(fresh, warehouse, full=True)
    [(still_marked,)] = query(
        warehouse,
        "select count(*) from elasticfunnels.customers where deleted_at is not null",
    )
    assert still_marked == 0


def test_wrong_key_stops_after_one_request(fresh, tmp_path):
    with pytest.raises(AuthError) as caught:
        sync(fresh, tmp_path / "w.duckdb", access_key="not-the-key")
    assert "SOURCES__ELASTICFUNNELS__ACCESS_KEY" in str(caught.value)
    assert "not-the-key" not in str(caught.value)
    assert sum(fresh.counts[route] for route in ("list", "quick_access")) == 1


def test_wrong_brand_names_the_brand_setting(fresh, tmp_path):
    with pytest.raises(AuthError) as caught:
        sync(fresh, tmp_path / "w.duckdb", brand="999")
    assert "SOURCES__ELASTICFUNNELS__BRAND" in str(caught.value)


def test_per_page_out_of_range_is_refused_before_any_request(fresh, tmp_path):
    with pytest.raises(ConfigurationError, match="per_page"):
        sync(fresh, tmp_path / "w.duckdb", per_page=500)
    assert fresh.counts["list"] == 0


def test_two_syncs_never_overlap(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with sync_lock(resolve_paths(warehouse)):
        with pytest.raises(WarehouseLocked, match="sync-lock"):
            sync(fresh, warehouse)
    assert fresh.counts["list"] == 0
    sync(fresh, warehouse)


def test_working_folder_sits_beside_the_warehouse(tmp_path):
    paths = resolve_paths(tmp_path / "brand.duckdb")
    assert paths.pipelines_dir == tmp_path / ".brand.dlt"
    with pytest.raises(ConfigurationError, match=".duckdb"):
        resolve_paths(tmp_path / "brand.db")


def test_duckdb_memory_is_capped_by_the_setting(fresh, tmp_path, monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    monkeypatch.setenv("EFW__MEMORY_LIMIT", "300MB")
    pipeline = make_pipeline(resolve_paths(warehouse))
    sync(fresh, warehouse)
    with pipeline.sql_client() as client:
        [(limit,)] = client.execute_sql("select current_setting('memory_limit')")
    # DuckDB reports the cap in binary units: 300 MB is 286.1 MiB.
    assert limit == "286.1 MiB"
    monkeypatch.delenv("EFW__MEMORY_LIMIT")
    with make_pipeline(resolve_paths(warehouse)).sql_client() as client:
        [(limit,)] = client.execute_sql("select current_setting('memory_limit')")
    assert limit == "488.2 MiB"


@pytest.mark.parametrize(
    ("limit", "said"), [("lots", "DuckDB takes a size"), ("1KB", "at least 64MB")]
)
def test_a_memory_limit_duckdb_cannot_read_exits_2_naming_it(
    limit, said, fresh, tmp_path, monkeypatch, capsys
):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    fresh.reset_counts()
    monkeypatch.setenv("EFW__MEMORY_LIMIT", limit)

    code, _ = guarded(lambda: sync(fresh, warehouse))
    assert code == 2
    err = capsys.readouterr().err
    assert f"`memory_limit` is '{limit}'" in err and said in err
    assert fresh.counts["list"] == 0
    assert main(["models", "--warehouse", str(warehouse)]) == 2
    assert "EFW__MEMORY_LIMIT" in capsys.readouterr().err


def test_a_reader_of_the_published_copy_never_blocks_a_sync(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    first = sync(fresh, warehouse, build=True)
    assert first.published is not None
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys\n"
            f"con = duckdb.connect({str(first.published)!r}, read_only=True)\n"
            "print(con.execute('select sum(gross_revenue) from marts.customer_ltv')"
            ".fetchone()[0], flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = Decimal(reader.stdout.readline())
        fresh.advance(timedelta(days=30).total_seconds())
        second = sync(fresh, warehouse, build=True)
        assert second.run.changed > 0
        assert reader.poll() is None, "the reader should still hold its copy"
    finally:
        reader.communicate("", timeout=30)
    gross = "select sum(gross_revenue) from marts.customer_ltv"
    [(published,)] = query(second.published, gross)
    assert published == query(warehouse, gross)[0][0] > held


def _requests(emulator: Emulator) -> int:
    return sum(emulator.counts.values())


@pytest.mark.parametrize(
    "where",
    [
        "under a file",
        "a folder named .duckdb",
        "not a DuckDB file",
        "the published copy",
        "dlt folder",
    ],
)
def test_a_warehouse_that_cannot_be_written_exits_2_naming_it(
    where, fresh, tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("not a folder")
    warehouse = tmp_path / "w.duckdb"
    named = tmp_path / "file"
    setting = "EFW__WAREHOUSE"
    if where == "under a file":
        warehouse = tmp_path / "file" / "w.duckdb"
    elif where == "a folder named .duckdb":
        warehouse.mkdir()
        named = warehouse
    elif where == "the published copy":
        warehouse = named = tmp_path / "w.published.duckdb"
    elif where == "not a DuckDB file":
        warehouse.write_text("not a database")
        named = warehouse
    else:
        monkeypatch.setenv("EFW__PIPELINES_DIR", str(tmp_path / "file" / "dlt"))
        setting = "EFW__PIPELINES_DIR"

    code, _ = guarded(lambda: sync(fresh, warehouse))

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG == 2
    assert f"`{named}" in err and setting in err
    if setting == "EFW__WAREHOUSE":
        assert "--warehouse" in err
    assert "Traceback" not in err
    assert _requests(fresh) == 0


@pytest.mark.parametrize("value", ["abc", "2.5", ""])
def test_a_setting_that_is_not_a_number_exits_2_naming_it(
    value, fresh, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SOURCES__ELASTICFUNNELS__PER_PAGE", value)

    code, _ = guarded(lambda: sync(fresh, tmp_path / "w.duckdb"))

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert f"`per_page` is {value!r}, not a whole number" in err
    assert "SOURCES__ELASTICFUNNELS__PER_PAGE" in err
    assert _requests(fresh) == 0


def test_a_secret_setting_that_cannot_be_read_is_never_shown(capsys):
    def refused() -> None:
        raise ConfigValueCannotBeCoercedException("access_key", "s3cret-key", int)

    code, _ = guarded(refused)

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "SOURCES__ELASTICFUNNELS__ACCESS_KEY" in err
    assert "s3cret" not in err


def test_an_unknown_business_time_zone_is_refused_before_any_request(
    fresh, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("EFW__BUSINESS_TIMEZONE", "Mars/Base")
    warehouse = tmp_path / "w.duckdb"

    code, _ = guarded(lambda: sync(fresh, warehouse, build=True))

    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "`Mars/Base`" in err and "EFW__BUSINESS_TIMEZONE" in err
    assert _requests(fresh) == 0
    assert not warehouse.exists()


def test_ctrl_c_during_a_sync_exits_130_and_the_next_run_picks_up(
    fresh, tmp_path, capsys
):
    def arrive(request) -> None:
        # Ctrl-C lands in the main thread; a worker thread is as good a place
        # to raise it, and lets dlt's extract see it where it really would.
        if fresh.counts["details"] >= 100:
            raise KeyboardInterrupt

    warehouse = tmp_path / "w.duckdb"
    args = argparse.Namespace(full=False, warehouse=str(warehouse), no_models=True)
    code = sync_command(
        args,
        transport=Watched(fresh.transport(), arrive=arrive),
        base_url="http://emulator.test/api",
        brand=DEFAULT_BRAND,
        access_key=DEFAULT_KEY,
        **FAST_RETRIES,
    )

    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED == 130
    assert "interrupted" in err and "next `efw sync` picks up" in err
    assert "Traceback" not in err
    sync(fresh, warehouse)
    [(count,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert count == len(api_rows(fresh))


def test_a_ctrl_c_behind_dlts_generator_error_is_still_a_ctrl_c():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("generator already executing")  # noqa: B904
    except ValueError as exc:
        assert isinstance(translate(exc), KeyboardInterrupt)


class InFlight(httpx.BaseTransport):
    """Counts the requests the emulator is answering at once, holding each
    for a few milliseconds so that they overlap."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.now = self.most = 0
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(0.003)
            return self.inner.handle_request(request)
        finally:
            with self._lock:
                self.now -= 1


def test_requests_in_flight_never_exceed_the_concurrency(fresh, tmp_path):
    counted = InFlight(fresh.transport())
    result = sync(fresh, tmp_path / "w.duckdb", transport=counted, concurrency=3)
    assert result.run.details_fetched > 100
    # More threads than slots wait for them; the slots alone bound the API.
    assert counted.most == 3


def test_json_the_fast_parser_refuses_is_still_read():
    client = ApiClient("http://api.test/api", "7", "key")
    try:
        headers = {"Content-Type": "application/json"}
        nan = httpx.Response(200, content=b'{"total": NaN}', headers=headers)
        total = client._read("details", nan, missing_ok=False)["total"]
        assert total != total  # NaN, as the standard library reads it
        utf16 = httpx.Response(
            200, content='{"name": "Zoë"}'.encode("utf-16"), headers=headers
        )
        assert client._read("details", utf16, missing_ok=False) == {"name": "Zoë"}
        broken = httpx.Response(200, content=b'{"name": ', headers=headers)
        with pytest.raises(TransientError, match="not valid JSON"):
            client._read("details", broken, missing_ok=False)
    finally:
        client.close()


def test_normalize_forks_a_pool_only_for_a_large_run(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    night, first = SyncRun(), SyncRun()
    night.details_fetched = 93
    first.details_fetched = 25_906
    assert normalize_workers(night) == 1
    assert normalize_workers(first) == 4
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert normalize_workers(first) == 1


def test_a_reconcile_marks_every_vanished_customer_in_one_run(
    fresh, tmp_path, monkeypatch
):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    fresh.set_clock(MID_1997 - timedelta(days=60))
    vanished = {email_key(r["customer_email"]) for r in api_rows(fresh)}
    fresh.set_clock(MID_1997)
    vanished = {email_key(r["customer_email"]) for r in api_rows(fresh)} - vanished
    fresh.set_clock(MID_1997 - timedelta(days=60))
    # Small batches of known keys, so that the vanished are spread over many
    # and each batch's lookup runs between two reads of the key list.
    monkeypatch.setattr(WarehouseCustomers, "KEYS_A_BATCH", 7)

    result = sync(fresh, warehouse, full=True)

    assert len(vanished) > 3 * 7
    assert result.run.deleted == len(vanished)
    marked = query(
        warehouse,
        "select email_key from elasticfunnels.customers where deleted_at is not null",
    )
    assert {key for (key,) in marked} == vanished


def test_a_warehouse_refuses_a_second_brand(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    sync(fresh, warehouse)
    counts = "select count(*), max(synced_at) from elasticfunnels.customers"
    before = query(warehouse, counts)
    fresh.reset_counts()

    with pytest.raises(ConfigurationError) as refused:
        sync(fresh, warehouse, brand="2000")

    message = str(refused.value)
    assert f"holds brand `{DEFAULT_BRAND}`" in message
    assert "brand `2000`" in message and "--warehouse" in message
    assert sum(fresh.counts.values()) == 0
    assert query(warehouse, counts) == before
    # The brand it holds still syncs; a new warehouse asks the API for the
    # other (which this emulator does not serve).
    sync(fresh, warehouse)
    with pytest.raises(AuthError) as other:
        sync(fresh, tmp_path / "other.duckdb", brand="2000")
    assert "holds brand" not in str(other.value)


def _client(base_url: str, handler=None, retry_budget: float = 0.3) -> ApiClient:
    """A client with a short retry budget, of `handler` if one is given."""
    return ApiClient(
        base_url,
        "7",
        "secret-key-1234",
        retry_budget=retry_budget,
        retry_floor=0.05,
        transport=httpx.MockTransport(handler) if handler else None,
    )


def test_an_api_never_reached_points_at_the_base_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    with _client(f"http://127.0.0.1:{port}/api") as client:
        with pytest.raises(ApiError) as failed:
            client.quick_access()
    message = str(failed.value)
    assert "connection failed (ConnectError" in message
    assert "If `127.0.0.1` is not the API's host, fix `base_url`" in message
    assert "SOURCES__ELASTICFUNNELS__BASE_URL" in message
    assert "secret-key-1234" not in message


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_a_certificate_that_fails_verification_stops_at_once(tmp_path):
    # A server whose certificate no public authority signed.
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            tmp_path / "key.pem",
            "-out",
            tmp_path / "cert.pem",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    handshakes = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                handshakes.append(1)
                try:
                    context.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        with _client(f"https://127.0.0.1:{port}/api", retry_budget=30) as client:
            with pytest.raises(ConfigurationError) as refused:
                client.quick_access()
    message = str(refused.value)
    # Not retried: one try, and the message says why and what to change.
    assert client.stats.requests == 1
    assert len(handshakes) == 1
    assert "TLS certificate of `127.0.0.1` could not be verified" in message
    assert "self-signed certificate" in message
    assert "SOURCES__ELASTICFUNNELS__BASE_URL" in message
    assert "SSL_CERT_FILE" in message
    assert "secret-key-1234" not in message


def test_a_first_sync_stopped_after_extract_resumes(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync(fresh, warehouse, hooks={"after_extract": stop})
    assert fresh.counts["details"] == len(api_rows(fresh))
    fresh.reset_counts()

    rerun = sync(fresh, warehouse)

    # What the stopped run fetched is loaded, not fetched again.
    assert rerun.resumed_packages == 1
    assert fresh.counts["details"] == 0
    [(customers,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert customers == len(api_rows(fresh))
    # And the brand it was fetched for is the warehouse's.
    with pytest.raises(ConfigurationError, match=f"holds brand `{DEFAULT_BRAND}`"):
        sync(fresh, warehouse, brand="2000")


RUN_ELSEWHERE = """
import json, pathlib, sys
from dlt.common.runtime import anon_tracker
from pipelines.emulator import Emulator
from tests.syncing import sync

warehouse = pathlib.Path("w.duckdb").resolve()
sync(Emulator.cdnow(max_customers=300), warehouse)
work = pathlib.Path(".w.dlt")
print(json.dumps({
    "tracker": anon_tracker._ANON_TRACKER_ENDPOINT,
    "kept": sorted(p.name for p in work.rglob("completed_jobs/*")),
    "gzipped": sorted(p.name for p in work.rglob("*.gz")),
}))
"""


def test_dlt_settings_efw_relies_on_hold_outside_its_folder(tmp_path):
    # No .dlt/ here: dlt's own defaults would report usage to its makers
    # and keep a copy of each loaded package in the working folder.
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", RUN_ELSEWHERE],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"tracker": None, "kept": [], "gzipped": []}


RUN_WITHOUT_BASE_URL = """
import httpx, pathlib
from pipelines.elasticfunnels.exceptions import AuthError
from pipelines.sync import run_sync

asked = []

def answer(request):
    asked.append(str(request.url.copy_with(query=None)))
    return httpx.Response(401, json={"message": "Invalid API key"})

try:
    run_sync(
        warehouse=pathlib.Path("w.duckdb").resolve(),
        transport=httpx.MockTransport(answer),
        build=False,
        brand="1042",
        access_key="not-a-real-key",
    )
except AuthError:
    print(asked)
"""


def test_base_url_defaults_to_the_vendors_api(tmp_path):
    # No .dlt/ here and no base_url anywhere: the README's default holds.
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if "BASE_URL" not in k}
    done = subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_BASE_URL],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == (
        "['https://app.elasticfunnels.io/api/brands/1042/customers']"
    )


def test_the_committed_config_repeats_the_built_in_dlt_defaults():
    root = Path(__file__).resolve().parents[1]
    committed = tomllib.loads((root / ".dlt" / "config.toml").read_text())

    def leaves(tree, path=()):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from leaves(value, (*path, key))
            else:
                yield (*path, key), value

    for path, value in leaves(DLT_DEFAULTS):
        node = committed
        for key in path:
            node = node[key]
        assert node == value, ".".join(path)


def test_bad_values_are_quarantined_without_their_values_in_the_log(
    fresh, tmp_path, caplog
):
    spoiled = []

    def spoil(body):
        rows = body["data"]
        # Pages the scan reads, not the five rows it asks for the newest date.
        if len(rows) > 5:
            rows[0]["customer_name"] = ["Jane Q Doe"]
            rows[1]["first_order_date"] = "0001-01-01T00:00:00+02:00"
            rows[2]["total_orders"] = "²"
            spoiled.extend(rows[:3])
        return body

    warehouse = tmp_path / "w.duckdb"
    transport = Watched(fresh.transport(), rewrite=spoil)
    with caplog.at_level("WARNING", logger="efw"):
        result = sync(fresh, warehouse, transport=transport)

    # Every bad row is set aside, once a customer, and the sync goes on.
    assert result.run.quarantined == len(spoiled) > 0
    reasons = query(
        warehouse,
        "select distinct reason from elasticfunnels.quarantine order by reason",
    )
    assert reasons == [
        ("`customer_name` is not text: '[\"Jane Q Doe\"]'",),
        (
            "`first_order_date` lies outside the years 1 to 9999 in UTC: "
            "'0001-01-01T00:00:00+02:00'",
        ),
        ("`total_orders` is not a whole number: '²'",),
    ]
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.message]
    assert len(logged) == len(spoiled)
    assert set(logged) == {
        "quarantined a customers row: `customer_name` is not text",
        "quarantined a customers row: `first_order_date` lies outside the years "
        "1 to 9999 in UTC",
        "quarantined a customers row: `total_orders` is not a whole number",
    }
    assert "Jane" not in caplog.text


HOLDS_THE_LOCK_AND_FORKS = """
import multiprocessing, sys, time
from pipelines.sync import resolve_paths, sync_lock

with sync_lock(resolve_paths(sys.argv[1])):
    worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
    worker.start()
    print(worker.pid, flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\\nState:\\tZ" not in status  # a zombie has finished


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_a_killed_sync_leaves_no_worker_holding_its_lock(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    root = Path(__file__).resolve().parents[1]
    sync_process = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_LOCK_AND_FORKS, str(warehouse)],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = int(sync_process.stdout.readline())
    assert sync_running(warehouse) and _alive(worker)

    sync_process.kill()  # SIGKILL, as the OOM killer sends
    sync_process.wait()

    deadline = time.monotonic() + 10
    while (sync_running(warehouse) or _alive(worker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sync_running(warehouse)
    assert not _alive(worker)


def last_order_dates(
    emulator: Emulator, warehouse: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """Each live buyer's `last_order_date`, as the API serves it now and as
    the warehouse holds it, by `email_key`."""
    served = {
        email_key(r["customer_email"]): r["last_order_date"]
        for r in api_rows(emulator)
        if r["last_order_date"] is not None
    }
    loaded = dict(
        query(
            warehouse,
            "select email_key, strftime(last_order_date at time zone 'UTC', "
            "'%Y-%m-%dT%H:%M:%SZ') from elasticfunnels.customers "
            "where deleted_at is null and last_order_date is not null",
        )
    )
    return served, loaded


def test_a_reconcile_takes_the_cursor_back_with_the_list(tmp_path):
    emulator = Emulator.cdnow(max_customers=2000)
    warehouse = tmp_path / "w.duckdb"
    emulator.set_clock(datetime(1998, 1, 8, tzinfo=UTC))
    sync(emulator, warehouse, full=True)
    # The API's clock set back: a reconcile sees the older list...
    emulator.set_clock(datetime(1997, 12, 1, tzinfo=UTC))
    sync(emulator, warehouse, full=True)
    # ... and the incremental after it finds every buyer since.
    emulator.set_clock(datetime(1997, 12, 20, tzinfo=UTC))
    night = sync(emulator, warehouse)
    assert night.run.mode == "incremental"

    served, loaded = last_order_dates(emulator, warehouse)
    assert night.run.new + night.run.changed > 0
    assert loaded == served


class BrokenDetails(httpx.BaseTransport):
    """Answers one customer's details with JSON cut short, every time."""

    def __init__(self, inner: httpx.BaseTransport, email: str) -> None:
        self.inner = inner
        self.path = f"/{quote_email(email)}/details"
        self.tries = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.raw_path.decode().split("?")[0].endswith(self.path):
            self.tries += 1
            return httpx.Response(
                200,
                content=b'{"customer": {"email": "x',
                headers={"content-type": "application/json"},
            )
        return self.inner.handle_request(request)


def test_one_customers_broken_details_are_set_aside(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    victim = api_rows(fresh)[7]
    key = email_key(victim["customer_email"])
    broken = BrokenDetails(fresh.transport(), victim["customer_email"])

    result = sync(fresh, warehouse, transport=broken)

    # A few tries, not the whole retry budget; then the others load.
    assert broken.tries == 3
    assert result.run.quarantined == 1
    [(kind, reason)] = query(
        warehouse,
        "select kind, reason from elasticfunnels.quarantine where email_key = ?",
        key,
    )
    assert kind == "unreadable"
    assert "3 times with a body that is not valid JSON" in reason
    [(details,)] = query(warehouse, "select count(*) from elasticfunnels.details")
    assert details == len(api_rows(fresh)) - 1

    # Mended upstream, the next sync that lists the customer fetches them.
    sync(fresh, warehouse, full=True)
    [(loaded,)] = query(
        warehouse,
        "select count(*) from elasticfunnels.details where email_key = ?",
        key,
    )
    assert loaded == 1


def test_a_first_sync_that_loaded_no_details_does_not_block_the_next(fresh, tmp_path):
    def no_details(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/details"):
            return httpx.Response(200, json=["not", "an", "object"])
        return fresh.transport().handle_request(request)

    warehouse = tmp_path / "w.duckdb"
    # The models build stand-ins for the raw tables a load did not make.
    first = sync(
        fresh, warehouse, transport=httpx.MockTransport(no_details), build=True
    )
    assert first.run.quarantined == first.run.details_fetched > 0

    # Every customer's details are fetched again, and this time they load.
    again = sync(fresh, warehouse, full=True)
    assert again.run.details_fetched == first.run.details_fetched
    [(loaded,)] = query(warehouse, "select count(*) from elasticfunnels.details")
    assert loaded == len(api_rows(fresh))


def test_one_working_folder_setting_serves_many_warehouses(tmp_path, monkeypatch):
    monkeypatch.setenv("EFW__PIPELINES_DIR", str(tmp_path / "dlt"))
    store = Emulator.cdnow(max_customers=200).store
    brands = {"2000": tmp_path / "b.duckdb", "3000": tmp_path / "a.duckdb"}
    for brand in ("2000", "3000", "2000"):
        emulator = Emulator(store, brand=brand)
        sync(emulator, brands[brand], brand=brand)

    folders = {resolve_paths(w).pipelines_dir for w in brands.values()}
    assert len(folders) == 2
    assert all(folder.parent == tmp_path / "dlt" for folder in folders)
    for warehouse in brands.values():
        [(customers,)] = query(
            warehouse, "select count(*) from elasticfunnels.customers"
        )
        assert customers == len(api_rows(Emulator(store)))


class InterruptedAfter(httpx.BaseTransport):
    """Serves `emulator` until `details` details calls, then acts as Ctrl-C."""

    def __init__(self, emulator: Emulator, details: int) -> None:
        self.inner = emulator.transport()
        self.left = details

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/details"):
            self.left -= 1
            if self.left < 0:
                raise KeyboardInterrupt
        return self.inner.handle_request(request)


def test_what_a_stopped_extract_wrote_is_deleted_by_the_next_sync(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    extracts = resolve_paths(warehouse).pipelines_dir / "efw" / "normalize"

    def unfinished() -> list[Path]:
        # dlt's own folder for completed extracts aside.
        return [p for p in extracts.iterdir() if p.is_dir() and p.name != "extracted"]

    with pytest.raises(KeyboardInterrupt):
        sync(fresh, warehouse, transport=InterruptedAfter(fresh, 300))
    # The stopped extract's folder, where customers' rows go as its writers
    # fill; no run reads it again.
    assert len(unfinished()) == 1

    sync(fresh, warehouse)
    assert unfinished() == []
    [(customers,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert customers == len(api_rows(fresh))


@pytest.mark.parametrize("value", ["-1", "0", "four"])
def test_worker_counts_that_cannot_be_are_refused_before_any_request(
    value, fresh, tmp_path, monkeypatch, capsys
):
    for section in ("normalize", "extract", "sources.elasticfunnels.extract"):
        variable = section.upper().replace(".", "__") + "__WORKERS"
        monkeypatch.setenv(variable, value)
        code, _ = guarded(lambda: sync(fresh, tmp_path / "w.duckdb"))
        monkeypatch.delenv(variable)
        assert code == EXIT_CONFIG
        err = capsys.readouterr().err
        assert f"`workers` under [{section}] is '{value}'" in err
        assert variable in err
        assert _requests(fresh) == 0


@pytest.mark.parametrize("name", ["EFW_LOG_LEVEL", "RUNTIME__LOG_LEVEL"])
def test_an_unknown_log_level_is_named(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(name, "LOUD")
    args = argparse.Namespace(full=False, warehouse=str(tmp_path / "w.duckdb"))
    assert sync_command(args) == EXIT_CONFIG
    assert f"{name} is 'LOUD'" in capsys.readouterr().err


def test_a_redirect_names_where_the_api_went_and_base_url():
    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            301,
            headers={"Location": "https://shop.example/api/brands/7/a%40b.c/x"},
        )

    with (
        _client("http://shop.example/api", moved) as client,
        pytest.raises(ConfigurationError) as moved_on,
    ):
        client.quick_access()
    message = str(moved_on.value)
    assert "answered 301 Moved Permanently to https://shop.example:" in message
    assert "SOURCES__ELASTICFUNNELS__BASE_URL" in message
    assert "%40" not in message and "secret-key" not in message
    assert client.stats.requests == 1


def test_a_website_at_base_url_is_named_as_the_likely_cause():
    def website(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, text="<html>shop</html>", headers={"content-type": "text/html"}
        )

    with (
        _client("http://shop.example/api", website) as client,
        pytest.raises(ApiError) as failed,
    ):
        client.quick_access()
    message = str(failed.value)
    assert "body instead of JSON" in message
    assert "If `shop.example` is not the API's host, fix `base_url`" in message


def test_an_order_dated_in_the_future_does_not_hold_the_cursor(tmp_path):
    emulator = Emulator.cdnow(max_customers=500)
    first, second = (
        datetime(1997, 12, 1, tzinfo=UTC),
        datetime(1997, 12, 20, tzinfo=UTC),
    )
    emulator.set_clock(first)
    future = "2099-01-01T00:00:00Z"

    touched = set()

    def from_the_future(body):
        for row in body["data"][:1]:
            if row["last_order_date"] is not None:
                row["last_order_date"] = future
                touched.add(email_key(row["customer_email"]))
        return body

    warehouse = tmp_path / "w.duckdb"
    transport = Watched(emulator.transport(), rewrite=from_the_future)
    # Each run at the API's own time, as in production.
    sync(emulator, warehouse, full=True, transport=transport, now=first)
    emulator.set_clock(second)
    night = sync(emulator, warehouse, now=second, reconcile_every_days=365, per_page=10)

    assert night.run.mode == "incremental"
    # The buyers of the 19 days since were all read, not just page 1's.
    assert night.run.pages > 1
    served, loaded = last_order_dates(emulator, warehouse)
    # The rows served with the bad date keep it until a row of theirs is read
    # again (they buy, or a reconcile); everyone else is as the API serves them.
    for key in touched:
        assert loaded.pop(key) in (served.pop(key), future)
    assert loaded == served


def test_kept_data_of_one_brand_is_never_loaded_for_another(fresh, tmp_path):
    warehouse = tmp_path / "w.duckdb"

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync(fresh, warehouse, hooks={"after_extract": stop})
    fresh.reset_counts()

    with pytest.raises(ConfigurationError, match=f"holds brand `{DEFAULT_BRAND}`"):
        sync(fresh, warehouse, brand="2000")
    # Refused before the kept package was loaded, and before any request.
    assert query(
        warehouse,
        "select count(*) from information_schema.tables "
        "where table_schema = 'elasticfunnels' and table_name = 'customers'",
    ) == [(0,)]
    assert sum(fresh.counts.values()) == 0
    assert sync(fresh, warehouse).resumed_packages == 1


def test_kept_data_never_lands_in_a_warehouse_of_another_brand(tmp_path, monkeypatch):
    store = Emulator.cdnow(max_customers=200).store
    brand_a, brand_b = Emulator(store, brand="2000"), Emulator(store, brand="3000")
    warehouse = tmp_path / "w.duckdb"

    def stop() -> None:
        raise KeyboardInterrupt

    # Brand 2000's run stops after its extract, in a shared working folder.
    monkeypatch.setenv("EFW__PIPELINES_DIR", str(tmp_path / "shared"))
    with pytest.raises(KeyboardInterrupt):
        sync(brand_a, warehouse, brand="2000", hooks={"after_extract": stop})
    # Brand 3000 syncs into the same file, with dlt's folder beside it.
    monkeypatch.delenv("EFW__PIPELINES_DIR")
    sync(brand_b, warehouse, brand="3000")
    # Back in the shared folder, brand 2000's kept data must not load there.
    monkeypatch.setenv("EFW__PIPELINES_DIR", str(tmp_path / "shared"))
    with pytest.raises(ConfigurationError, match="holds brand `3000`"):
        sync(brand_a, warehouse, brand="2000")
    [(customers,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert customers == len(api_rows(brand_b))


def test_two_customers_whose_emails_differ_only_in_case_still_sync(tmp_path):
    # Both are real customers and both count in the list's `total`: the one
    # quarantined still took its place in the list, so a reconcile that
    # counts it is complete and the sync loads everything else.
    from pipelines.emulator import data
    from pipelines.emulator.store import Store

    cdnow = data.load_cdnow(max_customers=300)
    emails = cdnow.email.tolist()
    emails[20] = emails[10].upper()
    assert email_key(emails[20]) == email_key(emails[10]) and emails[20] != emails[10]
    emulator = Emulator(
        Store(
            dataclasses.replace(cdnow, email=np.array(emails, dtype=cdnow.email.dtype))
        )
    )
    warehouse = tmp_path / "w.duckdb"
    keys = {email_key(r["customer_email"]) for r in api_rows(emulator)}
    listed = len(api_rows(emulator))
    assert (listed, len(keys)) == (330, 329)  # 300 buyers, 30 leads

    for full in (False, True):
        result = sync(emulator, warehouse, full=full)
        assert result.run.mode == "full"
        assert (result.run.rescans, result.run.duplicates) == (0, 1)

    loaded = query(
        warehouse,
        "select email_key from elasticfunnels.customers where deleted_at is null",
    )
    assert len(loaded) == 329
    assert {key for (key,) in loaded} == keys
    assert query(
        warehouse,
        "select kind, count(*) from elasticfunnels.quarantine "
        "where resource = 'customers' group by kind",
    ) == [("duplicate_key", 2)]  # once a sync


def test_a_sigterm_at_the_end_of_normalize_still_stops_the_sync(
    fresh, tmp_path, monkeypatch, capsys
):
    # dlt checks for a held signal between its rounds of work, not after the
    # last one: a SIGTERM that lands then would be forgotten.
    from dlt.normalize.normalize import Normalize

    original = Normalize.run

    def run_then_terminated(self, pool):
        metrics = original(self, pool)
        if metrics.pending_items == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    monkeypatch.setattr(Normalize, "run", run_then_terminated)
    warehouse = tmp_path / "w.duckdb"
    args = argparse.Namespace(full=False, warehouse=str(warehouse), no_models=True)
    code = sync_command(
        args,
        transport=fresh.transport(),
        base_url="http://emulator.test/api",
        brand=DEFAULT_BRAND,
        access_key=DEFAULT_KEY,
        **FAST_RETRIES,
    )
    assert code == EXIT_INTERRUPTED
    assert "Traceback" not in capsys.readouterr().err

    monkeypatch.setattr(Normalize, "run", original)
    again = sync(fresh, warehouse)
    assert again.resumed_packages == 1
    [(count,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert count == len(api_rows(fresh))


def test_a_misspelt_setting_is_named_before_any_request(
    fresh, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("EFW__WAREHOSE", str(tmp_path / "elsewhere.duckdb"))
    code, _ = guarded(lambda: sync(fresh, tmp_path / "w.duckdb"))
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "`warehose` under [efw] in the environment (EFW__WAREHOSE)" in err
    assert "reads; did you mean `warehouse`?" in err
    monkeypatch.delenv("EFW__WAREHOSE")

    project = tmp_path / "project"
    (project / ".dlt").mkdir(parents=True)
    (project / ".dlt" / "config.toml").write_text(
        "[sources.elasticfunnels]\nlookback_day = 5\n"
        "[sources.elasticfunnels.data_writer]\nfile_max_items = 100\n"
    )
    monkeypatch.chdir(project)
    code, _ = guarded(lambda: sync(fresh, tmp_path / "w.duckdb"))
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "`lookback_day` under [sources.elasticfunnels] in .dlt/config.toml" in err
    assert "did you mean `lookback_days`?" in err

    (project / ".dlt" / "config.toml").write_text('[ewf]\nwarehouse = "x.duckdb"\n')
    code, _ = guarded(lambda: sync(fresh, tmp_path / "w.duckdb"))
    err = capsys.readouterr().err
    assert code == EXIT_CONFIG
    assert "[ewf] in .dlt/config.toml is not a section efw reads" in err
    assert "did you mean [efw]?" in err
    assert _requests(fresh) == 0
    assert not (tmp_path / "w.duckdb").exists()
