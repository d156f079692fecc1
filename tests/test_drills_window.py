"""Drill 6: Elasticsearch serves no result past 10,000 for one query. A full
reconcile of a larger list still reads every customer, or fails naming the
limit; it never loads part of the list."""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.commands import EXIT_API, guarded
from pipelines.elasticfunnels.exceptions import ResultWindowExceeded
from pipelines.elasticfunnels.records import email_key
from pipelines.emulator import Emulator, Faults
from pipelines.sync import make_pipeline, resolve_paths
from tests.drilling import (
    Watched,
    copy_warehouse,
    load_ids,
    local_state,
    stored_state,
)
from tests.syncing import api_rows, query, sync

pytestmark = pytest.mark.slow


def recording(emulator: Emulator):
    """A transport that notes the type, sort, direction and search of every
    list page it serves."""
    queries: Counter[tuple] = Counter()

    def watch(request, response):
        if request.url.path.endswith("/customers"):
            p = request.url.params
            key = (p.get("type"), p.get("sort"), p.get("sort_direction"), p.get("q"))
            queries[key] += 1

    return Watched(emulator.transport(), watch=watch), queries


@pytest.fixture(scope="module")
def big() -> Emulator:
    """25,000 customers (20,000 buyers, 5,000 leads), the window enforced."""
    emulator = Emulator.synthetic(25_000)
    emulator.faults = Faults(es_window=True)
    return emulator


@pytest.fixture(scope="module")
def loaded(big, tmp_path_factory):
    """The first sync of `big`, a full reconcile, with the default window."""
    warehouse = tmp_path_factory.mktemp("big") / "w.duckdb"
    transport, queries = recording(big)
    result = sync(big, warehouse, now=big.as_of, transport=transport)
    return warehouse, result, queries, big.counts


def test_a_scan_past_the_window_reads_every_customer(big, loaded):
    warehouse, result, queries, counts = loaded
    served = api_rows(big)
    assert len(served) == 25_000

    [(customers, details)] = query(
        warehouse,
        "select (select count(*) from elasticfunnels.customers), "
        "(select count(*) from elasticfunnels.details)",
    )
    assert customers == details == result.run.listed == 25_000
    keys = {
        k for (k,) in query(warehouse, "select email_key from elasticfunnels.customers")
    }
    assert keys == {email_key(r["customer_email"]) for r in served}
    # One page to learn the total, then split by type; the buyers, more than
    # the window, read from both ends of the email order; the emulator never
    # had to refuse a page.
    scans = {(t, s, d) for (t, s, d, q) in queries if s == "customer_email"}
    assert scans == {
        (None, "customer_email", "asc"),
        ("customer", "customer_email", "asc"),
        ("customer", "customer_email", "desc"),
        ("abandon", "customer_email", "asc"),
    }
    assert queries[(None, "customer_email", "asc", None)] == 1
    assert counts[500] == 0
    assert result.run.rescans == 0 and result.run.quarantined == 0


@pytest.fixture(scope="module")
def small() -> Emulator:
    emulator = Emulator.synthetic(3_000)
    emulator.faults = Faults(es_window=True)
    return emulator


def test_email_domain_searches_reach_past_both_ends(small, tmp_path):
    """With a window of 300 (as if the vendor had lowered it), 2,400 buyers
    are more than both ends of the email order show: the rest are read one
    email domain at a time (`q=@domain`)."""
    transport, queries = recording(small)
    warehouse = tmp_path / "w.duckdb"

    result = sync(
        small, warehouse, now=small.as_of, transport=transport, max_result_window=300
    )

    served = api_rows(small)
    [(customers,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert customers == result.run.listed == len(served) == 3_000
    domains = {q for (t, s, d, q) in queries if q}
    assert len(domains) >= 5 and all(q.startswith("@") for q in domains)
    # No query was paged past the window: 3 pages of 100 at most.
    assert max(queries.values()) <= 3


def test_domain_searches_read_only_the_middle(small, tmp_path):
    """With a window of 1,000 and 50 a page, both ends of the email order show
    2,000 of the 2,400 buyers. Each domain's search starts near its first
    customer not yet seen and stops near its last: fewer pages than reading
    every domain whole, and still every customer."""
    transport, queries = recording(small)
    warehouse = tmp_path / "w.duckdb"

    result = sync(
        small,
        warehouse,
        now=small.as_of,
        transport=transport,
        max_result_window=1000,
        per_page=50,
    )

    [(customers,)] = query(warehouse, "select count(*) from elasticfunnels.customers")
    assert customers == result.run.listed == 3_000
    buyers = Counter(
        r["customer_email"].rpartition("@")[2].lower()
        for r in api_rows(small, type="customer")
    )
    whole = sum(-(-count // 50) for count in buyers.values())
    searched = sum(n for (t, s, d, q), n in queries.items() if q)
    assert {q for (t, s, d, q) in queries if q} == {f"@{d}" for d in buyers}
    assert searched <= 0.75 * whole
    assert result.run.rescans == 0


def test_a_list_past_every_ordering_fails_loudly(big, loaded, tmp_path, capsys):
    """With a window of 100, no ordering or search reaches every buyer: the
    reconcile fails with exit code 3 and a message naming the limit and the
    setting, loads nothing, and leaves the cursor and the warehouse as they
    were. (A copy of the loaded warehouse, so no details are fetched.)"""
    warehouse = copy_warehouse(loaded[0], tmp_path / "w.duckdb")
    before = (stored_state(warehouse), local_state(warehouse), load_ids(warehouse))
    [(marked,)] = query(
        warehouse, "select count(deleted_at) from elasticfunnels.customers"
    )
    errors = []

    def run():
        try:
            return sync(big, warehouse, full=True, now=big.as_of, max_result_window=100)
        except ResultWindowExceeded as exc:
            errors.append(exc)
            raise

    code, _ = guarded(run)

    message = capsys.readouterr().err
    assert code == EXIT_API == 3 and errors
    assert "at most 100 results per query" in message
    assert "customers of type `customer` could not be reached" in message
    assert "Nothing from this run was loaded" in message
    assert "`max_result_window`" in message
    assert (
        stored_state(warehouse),
        local_state(warehouse),
        load_ids(warehouse),
    ) == before
    assert not make_pipeline(resolve_paths(warehouse)).has_pending_data
    [(still_marked,)] = query(
        warehouse, "select count(deleted_at) from elasticfunnels.customers"
    )
    assert still_marked == marked == 0


def test_a_first_sync_past_the_window_loads_nothing(small, tmp_path):
    warehouse = tmp_path / "w.duckdb"
    with pytest.raises(ResultWindowExceeded):
        sync(small, warehouse, now=small.as_of, max_result_window=50)
    assert load_ids(warehouse) == []
