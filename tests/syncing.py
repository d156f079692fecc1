"""Helpers for tests that sync from an in-process emulator into a temp warehouse."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx

from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator
from pipelines.sync import SyncResult, run_sync

FAST_RETRIES = {"retry_floor_seconds": 0.01, "retry_budget_seconds": 20.0}


def sync(
    emulator: Emulator,
    warehouse: Path,
    *,
    full: bool = False,
    build: bool = False,
    transport: httpx.BaseTransport | None = None,
    **overrides: Any,
) -> SyncResult:
    """One `efw sync` against `emulator`, through its in-process transport
    (or `transport`, which wraps it)."""
    args: dict[str, Any] = {
        "base_url": "http://emulator.test/api",
        "brand": DEFAULT_BRAND,
        "access_key": DEFAULT_KEY,
        **FAST_RETRIES,
        **overrides,
    }
    return run_sync(
        full=full,
        warehouse=warehouse,
        transport=transport or emulator.transport(),
        build=build,
        **args,
    )


def query(warehouse: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def api_rows(emulator: Emulator, **filters: Any) -> list[dict[str, Any]]:
    """Every list row the emulator serves now, straight from its store."""
    rows, total = emulator.store.list_customers(
        offset=0, limit=10**9, sort="customer_email", **filters
    )
    assert len(rows) == total
    return rows


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
