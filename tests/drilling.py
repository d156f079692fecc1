"""Helpers for the fault drills: whole-warehouse snapshots to compare, the
cursor a warehouse stores, and transports that bend the emulator's answers.

A snapshot holds every row of the tables a user reads (customers, details,
orders, products, subscriptions) without dlt's load bookkeeping, so two
warehouses built by different histories compare equal exactly when they
hold the same data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
from dlt.common.versioned_state import decompress_state

from pipelines.emulator import Emulator
from pipelines.sync import PIPELINE_NAME, resolve_paths

RAW = "elasticfunnels"
#: Columns that say when and in which load a row arrived, not what it holds.
BOOKKEEPING = frozenset(
    {"_dlt_load_id", "_dlt_id", "_dlt_parent_id", "_dlt_root_id", "synced_at"}
)
DATA_TABLES = (
    "customers",
    "details",
    "details__orders",
    "details__orders__products",
    "details__subscriptions",
)
# How a nested row reaches its customer and, for products, its order: the
# columns that identify it in place of dlt's ids.
_PARENTS = {
    "details__orders": (
        "d.email_key",
        f"join {RAW}.details d on t._dlt_parent_id = d._dlt_id",
    ),
    "details__subscriptions": (
        "d.email_key",
        f"join {RAW}.details d on t._dlt_parent_id = d._dlt_id",
    ),
    "details__orders__products": (
        "d.email_key, o.id as order_id",
        f"join {RAW}.details__orders o on t._dlt_parent_id = o._dlt_id "
        f"join {RAW}.details d on o._dlt_parent_id = d._dlt_id",
    ),
}
# What must be unique in each table: a repeat is a customer or order kept twice.
_KEYS = {
    "customers": ("email_key",),
    "details": ("email_key",),
    "details__orders": ("email_key", "id"),
    "details__orders__products": ("email_key", "order_id", "_dlt_list_idx"),
    "details__subscriptions": ("email_key", "_dlt_list_idx"),
}


class Snapshot(dict):
    """Table name -> (column names, sorted rows)."""

    def rows(self, table: str) -> list[dict[str, Any]]:
        columns, rows = self.get(table, ((), []))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def count(self, table: str) -> int:
        return len(self.get(table, ((), []))[1])


def connect(warehouse: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(warehouse), read_only=True)


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [RAW, table],
        ).fetchall()
    ]


def snapshot(warehouse: Path) -> Snapshot:
    """Every data row of the warehouse, bookkeeping left out, in a fixed order.

    Nested rows carry their customer's `email_key` (and order id) instead of
    dlt's parent ids; an orphan, a nested row whose parent is gone, fails.
    """
    out = Snapshot()
    with connect(warehouse) as con:
        for table in DATA_TABLES:
            columns = [c for c in table_columns(con, table) if c not in BOOKKEEPING]
            if not columns:
                continue
            select = ", ".join(f"t.{c}" for c in columns)
            prefix, joins = _PARENTS.get(table, ("", ""))
            if prefix:
                select = f"{prefix}, {select}"
                names = [p.split()[-1].split(".")[-1] for p in prefix.split(", ")]
                columns = names + columns
            sql = f"select {select} from {RAW}.{table} t {joins}"
            rows = con.execute(sql).fetchall()
            if prefix:
                # A nested row must meet its parent exactly once.
                [(total,)] = con.execute(
                    f"select count(*) from {RAW}.{table}"
                ).fetchall()
                assert len(rows) <= total, f"{table}: a parent is held twice"
                assert len(rows) == total, f"{table} has rows whose parent is gone"
            out[table] = (tuple(columns), sorted(rows, key=repr))
    return out


def repeated_rows(warehouse: Path) -> dict[str, int]:
    """Rows held twice (the same `_dlt_id`) in any data table, by table.

    dlt's own `_dlt_pipeline_state` is left out: a state row written twice
    holds the same version and is harmless."""
    found = {}
    with connect(warehouse) as con:
        tables = con.execute(
            "select table_name from information_schema.columns "
            "where table_schema = ? and column_name = '_dlt_id' "
            "and table_name not like '\\_dlt%' escape '\\'",
            [RAW],
        ).fetchall()
        for (table,) in tables:
            [(repeats,)] = con.execute(
                f"select count(*) - count(distinct _dlt_id) from {RAW}.{table}"
            ).fetchall()
            if repeats:
                found[table] = repeats
    return found


def duplicates(snap: Snapshot) -> dict[str, list[tuple]]:
    """Keys held more than once, by table; empty when nothing is doubled."""
    found = {}
    for table, key in _KEYS.items():
        counts = Counter(tuple(r[k] for k in key) for r in snap.rows(table))
        repeated = [k for k, n in counts.items() if n > 1]
        if repeated:
            found[table] = repeated[:5]
    return found


def assert_same(actual: Snapshot, expected: Snapshot) -> None:
    """Both warehouses hold the same rows in every data table."""
    assert set(actual) == set(expected)
    for table in expected:
        columns, rows = actual[table]
        want_columns, want_rows = expected[table]
        assert columns == want_columns, table
        if rows != want_rows:
            extra = [r for r in rows if r not in set(want_rows)]
            missing = [r for r in want_rows if r not in set(rows)]
            raise AssertionError(
                f"{table}: {len(rows)} rows, expected {len(want_rows)}; "
                f"{len(extra)} unexpected, {len(missing)} missing; "
                f"columns {columns}; first unexpected {extra[:2]}; "
                f"first missing {missing[:2]}"
            )


def stored_state(warehouse: Path) -> dict[str, Any]:
    """The `customers` resource state the warehouse holds, as of its last load.

    This is what a run restores when dlt's working folder is gone, and what
    must never be ahead of the loaded data.
    """
    with connect(warehouse) as con:
        try:
            rows = con.execute(
                f"select s.state from {RAW}._dlt_pipeline_state s "
                f"join {RAW}._dlt_loads l on l.load_id = s._dlt_load_id "
                "where s.pipeline_name = ? and l.status = 0 "
                "order by s.version desc limit 1",
                [PIPELINE_NAME],
            ).fetchall()
        except duckdb.CatalogException:
            return {}
    if not rows:
        return {}
    return _customers_state(decompress_state(rows[0][0]))


def local_state(warehouse: Path) -> dict[str, Any]:
    """The same state in dlt's working folder, which extract moves ahead."""
    path = resolve_paths(warehouse).pipelines_dir / PIPELINE_NAME / "state.json"
    if not path.exists():
        return {}
    return _customers_state(json.loads(path.read_text()))


def _customers_state(state: dict[str, Any]) -> dict[str, Any]:
    sources = state.get("sources", {})
    return sources.get(RAW, {}).get("resources", {}).get("customers", {})


def cursor(state: dict[str, Any]) -> datetime | None:
    value = state.get("last_order_date")
    return datetime.fromisoformat(value) if value else None


def newest_loaded_order(warehouse: Path) -> datetime | None:
    """The newest `last_order_date` the warehouse holds, None without rows."""
    with connect(warehouse) as con:
        try:
            [(newest,)] = con.execute(
                f"select max(last_order_date) from {RAW}.customers"
            ).fetchall()
        except duckdb.CatalogException:
            return None
    return newest


def load_ids(warehouse: Path) -> list[str]:
    """The loads the warehouse completed; none when it does not exist."""
    if not Path(warehouse).exists():
        return []
    with connect(warehouse) as con:
        try:
            rows = con.execute(
                f"select load_id from {RAW}._dlt_loads order by load_id"
            ).fetchall()
        except duckdb.CatalogException:
            return []
    return [load_id for (load_id,) in rows]


def per_load_counts(warehouse: Path, table: str) -> Counter[str]:
    """Rows of an append table by load: a repeat within one load is a double."""
    with connect(warehouse) as con:
        try:
            rows = con.execute(
                f"select _dlt_load_id, count(*) from {RAW}.{table} group by 1"
            ).fetchall()
        except duckdb.CatalogException:
            return Counter()
    return Counter(dict(rows))


def copy_warehouse(source: Path, target: Path) -> Path:
    """Copies a warehouse with dlt's working folder, so a drill can start from
    a loaded state without syncing it again."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    shutil.copytree(
        resolve_paths(source).pipelines_dir, resolve_paths(target).pipelines_dir
    )
    return target


class Routed(httpx.BaseTransport):
    """Sends list and quick-access requests to one emulator and details to
    another, both over the same store: bad data on one route only."""

    def __init__(self, lists: Emulator, details: Emulator) -> None:
        self.lists = lists.transport()
        self.details = details.transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/details"):
            return self.details.handle_request(request)
        return self.lists.handle_request(request)


class Watched(httpx.BaseTransport):
    """Hands each request to `arrive` before the emulator serves it, and each
    request and its answer to `watch` after; `rewrite` may replace a list
    page's body before the client reads it."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        watch: Callable[[httpx.Request, httpx.Response], None] | None = None,
        rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        arrive: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self.inner = inner
        self.watch = watch
        self.rewrite = rewrite
        self.arrive = arrive
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.arrive is not None:
            with self._lock:
                self.arrive(request)
        response = self.inner.handle_request(request)
        if self.watch is not None:
            self.watch(request, response)
        is_list = request.url.path.endswith("/customers")
        if self.rewrite is not None and is_list and response.status_code == 200:
            body = self.rewrite(json.loads(response.read()))
            return httpx.Response(
                200,
                content=json.dumps(body).encode(),
                headers={"content-type": "application/json"},
            )
        return response


def environment(**settings: str) -> dict[str, str]:
    """This process's environment plus `SOURCES__ELASTICFUNNELS__*` settings,
    for a child `efw sync`; nothing of the parent's efw settings leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "EFW", "DESTINATION__"))
    }
    for name, value in settings.items():
        env[f"SOURCES__ELASTICFUNNELS__{name.upper()}"] = value
    return env


HOLDER = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
print("holding", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_open(
    database: Path, *, read_only: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the DuckDB file `database` open for the block,
    to write, or to read as a BI tool or the duckdb shell does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database), "read" if read_only else "write"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield holder
    finally:
        holder.communicate("", timeout=30)
