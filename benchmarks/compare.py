"""efw against dlt's generic `rest_api` source and a plain script, side by side.

Run with `.venv/bin/python benchmarks/compare.py` (about 25 minutes on 2 cores; see
`--help`). One emulator process a data set and latency serves every client
over loopback HTTP; each client runs in its own Python process, so its peak
memory is its own. The clients:

- `efw`: `run_sync`, as `efw sync` runs it, without the model build;
- `rest_api`: dlt's `rest_api_source`, configured declaratively the way its
  documentation shows: a page-number paginator over the list, a `details`
  resource resolved from each listed email, an `incremental` on
  `last_order_date` sorted descending;
- `rest_api par`: the same with `parallelized: True` on `details` and
  `EXTRACT__WORKERS` set to efw's concurrency;
- `plain`: an httpx loop over the list pages, details fetched by a thread
  pool of efw's concurrency, rows written to DuckDB with `executemany`.

Each does a full sync as of 1998-06-15, then the emulator's clock moves one
day and each syncs again (the plain script reloads everything; it has no
other way). Requests are the emulator's count, reset between runs; a run is
right when its warehouse holds as many customers, purchase orders and as
much revenue as the emulator serves.

Where a run would take too long, the client stops after `--sample-pages` list
pages and the table shows its figures scaled by (all pages / pages read),
marked `~`; correctness is then checked within the sample: every loaded
customer has their details, orders and revenue.

`--memory 200000,1000000` instead runs only efw, with 0 ms latency, on each
synthetic size in turn (a full sync, then a day), and compares the peak
memory of the full syncs. After the first size it prints how long the next
will take at the same pace; a million customers take about an hour on 2
cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

# Run as a script from a checkout: make `pipelines` and `benchmarks` importable.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sync import (  # noqa: E402
    CLOCK,
    DAY_SECONDS,
    PAGE_SIZE,
    EmulatorProcess,
    machine,
)
from pipelines.elasticfunnels import settings  # noqa: E402

CONCURRENCY = settings.DEFAULT_CONCURRENCY
CLIENTS = ("efw", "rest_api", "rest_api_par", "plain")
LABELS = {
    "efw": "efw",
    "rest_api": "rest_api (docs default)",
    "rest_api_par": "rest_api (parallelized)",
    "plain": "plain httpx + DuckDB",
}
# Clients whose sample is the newest customers (the list sorted by last order
# date, descending): their cursor is right after a sample, so their day is too.
NEWEST = {"rest_api", "rest_api_par"}
DETAILS_PARAMS = {"include_orders": "true", "include_subscriptions": "true"}


# -- the clients, each run in a child process ----------------------------------


def run_client(args: argparse.Namespace) -> dict[str, Any]:
    """Runs one client once against the emulator; returns its figures."""
    runners = {
        "efw": run_efw,
        "rest_api": run_rest_api,
        "rest_api_par": run_rest_api,
        "plain": run_plain,
    }
    args.extra = {}
    started = time.perf_counter()
    rows = runners[args.client](args)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": rows,
        **args.extra,
        **check_warehouse(args),
    }


def run_efw(args: argparse.Namespace) -> int:
    import dlt

    import pipelines.sync as sync

    counted = count_normalized_rows(dlt)
    if args.max_pages:
        source = sync.elasticfunnels

        def sampled(*a: Any, **kw: Any) -> Any:
            found = source(*a, **kw)
            found.resources["customers"].add_limit(args.max_pages)
            return found

        sync.elasticfunnels = sampled
    sync.run_sync(
        full=args.phase == "full",
        warehouse=args.warehouse,
        build=False,
        base_url=args.base_url,
        brand=args.brand,
        access_key=args.key,
        concurrency=CONCURRENCY,
        # The emulator serves every page, as it does to the other clients;
        # efw's scan split for Elasticsearch's window would add list pages.
        max_result_window=0,
    )
    return counted()


def count_normalized_rows(dlt: Any) -> Any:
    """Counts the data rows every `normalize` of this process writes."""
    totals = {"rows": 0}
    normalize = dlt.Pipeline.normalize

    def counting(self: Any, *a: Any, **kw: Any) -> Any:
        info = normalize(self, *a, **kw)
        for table, rows in info.row_counts.items():
            if not table.startswith("_dlt"):
                totals["rows"] += rows
        return info

    dlt.Pipeline.normalize = counting
    return lambda: totals["rows"]


def rest_api_config(args: argparse.Namespace) -> dict[str, Any]:
    """The list and details routes, declared as rest_api's documentation shows."""
    customers_path = f"brands/{args.brand}/customers"
    details: dict[str, Any] = {
        "name": "details",
        "primary_key": "_customers_customer_email",
        "write_disposition": "merge",
        "include_from_parent": ["customer_email"],
        "endpoint": {
            "path": customers_path + "/{resources.customers.customer_email}/details",
            "params": DETAILS_PARAMS,
            "data_selector": "$",
            "paginator": "single_page",
            # A customer gone between list and details answers 404.
            "response_actions": [{"status_code": 404, "action": "ignore"}],
        },
    }
    if args.client == "rest_api_par":
        details["parallelized"] = True
    return {
        "client": {
            "base_url": args.base_url.rstrip("/") + "/",
            "auth": {
                "type": "api_key",
                "name": "EF-Access-Key",
                "api_key": args.key,
                "location": "header",
            },
            "paginator": {
                "type": "page_number",
                "base_page": 1,
                "page_param": "page",
                "total_path": "last_page",
            },
        },
        "resources": [
            {
                "name": "customers",
                "primary_key": "customer_email",
                "write_disposition": "merge",
                "endpoint": {
                    "path": customers_path,
                    "params": {
                        "per_page": PAGE_SIZE,
                        "sort": "last_order_date",
                        "sort_direction": "desc",
                    },
                    "data_selector": "data",
                    # The list has no date filter: no start_param. Sorted
                    # newest first, row_order stops paging at the first row
                    # older than the cursor; leads (null dates) come last.
                    "incremental": {
                        "cursor_path": "last_order_date",
                        "initial_value": "1970-01-01T00:00:00Z",
                        "row_order": "desc",
                        "on_cursor_value_missing": "include",
                    },
                },
            },
            details,
        ],
    }


def run_rest_api(args: argparse.Namespace) -> int:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    if args.client == "rest_api_par":
        os.environ["EXTRACT__WORKERS"] = str(CONCURRENCY)
    source = rest_api_source(rest_api_config(args))
    if args.max_pages:
        source.resources["customers"].add_limit(args.max_pages)
    pipeline = dlt.pipeline(
        pipeline_name="restapi_bench",
        destination=dlt.destinations.duckdb(args.warehouse),
        dataset_name="restapi",
        pipelines_dir=str(Path(args.warehouse).parent / f".{args.client}.dlt"),
        progress=None,
    )
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    counts = pipeline.last_trace.last_normalize_info.row_counts
    return sum(rows for table, rows in counts.items() if not table.startswith("_dlt"))


def run_plain(args: argparse.Namespace) -> int:
    """Pages the list, fetches details on a thread pool, writes with executemany."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor
    from urllib.parse import quote

    import duckdb

    db = duckdb.connect(args.warehouse)
    db.execute(
        "create or replace table customers (email text, name text, "
        "country text, last_order_date timestamptz, total_orders bigint, "
        "total_revenue decimal(14, 2), lifetime_value decimal(14, 2))"
    )
    db.execute(
        "create or replace table orders (email text, id text, ordered_at "
        "timestamptz, total decimal(14, 2), status text)"
    )
    path = f"/brands/{args.brand}/customers"
    http = httpx.Client(
        base_url=args.base_url,
        headers={"EF-Access-Key": args.key},
        timeout=60,
        limits=httpx.Limits(max_connections=CONCURRENCY),
    )

    def details(email: str) -> dict[str, Any] | None:
        url = f"{path}/{quote(email, safe='')}/details"
        response = http.get(url, params=DETAILS_PARAMS)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    written = 0
    inserting = {"seconds": 0.0}
    pending: deque[tuple[dict[str, Any], Future[Any]]] = deque()

    def drain(keep: int) -> None:
        nonlocal written
        customers, orders = [], []
        while len(pending) > keep:
            row, future = pending.popleft()
            body = future.result()
            email = row["customer_email"]
            customers.append(
                (
                    email,
                    row["customer_name"],
                    row["customer_country"],
                    row["last_order_date"],
                    row["total_orders"],
                    row["total_revenue"],
                    row["lifetime_value"],
                )
            )
            for order in (body or {}).get("orders", []):
                orders.append(
                    (email, order["id"], order["date"], order["total"], order["status"])
                )
        started = time.perf_counter()
        if customers:
            db.executemany(
                "insert into customers values (?, ?, ?, ?, ?, ?, ?)", customers
            )
        if orders:
            db.executemany("insert into orders values (?, ?, ?, ?, ?)", orders)
        written += len(customers) + len(orders)
        inserting["seconds"] += time.perf_counter() - started

    with http, ThreadPoolExecutor(CONCURRENCY) as pool:
        page, last = 1, 1
        while page <= last and not (args.max_pages and page > args.max_pages):
            params = {
                "page": page,
                "per_page": PAGE_SIZE,
                "sort": "customer_email",
                "sort_direction": "asc",
            }
            response = http.get(path, params=params)
            response.raise_for_status()
            body = response.json()
            last = body["last_page"]
            for row in body["data"]:
                pending.append((row, pool.submit(details, row["customer_email"])))
            # Keep two pages of details in flight; write what is done.
            drain(keep=2 * PAGE_SIZE)
            page += 1
        drain(keep=0)
    db.close()
    args.extra["insert_seconds"] = round(inserting["seconds"], 1)
    return written


def check_warehouse(args: argparse.Namespace) -> dict[str, Any]:
    """What the client's warehouse holds: customers, orders, revenue."""
    import duckdb

    queries = {
        "efw": (
            "select count(*) from elasticfunnels.customers where deleted_at is null",
            "from elasticfunnels.details__orders where status <> 'abandoned'",
            "select c.customer_email from elasticfunnels.customers c left join "
            "elasticfunnels.details d using (email_key) where d.email_key is null "
            "and c.deleted_at is null",
            "select coalesce(sum(total_orders), 0), coalesce(sum(total_revenue), 0) "
            "from elasticfunnels.customers where deleted_at is null",
        ),
        "rest_api": (
            "select count(*) from restapi.customers",
            "from restapi.details__orders where status <> 'abandoned'",
            "select c.customer_email from restapi.customers c "
            "left join restapi.details d "
            "on d._customers_customer_email = c.customer_email "
            "where d._customers_customer_email is null",
            "select coalesce(sum(total_orders), 0), coalesce(sum(total_revenue), 0) "
            "from restapi.customers",
        ),
        "plain": (
            "select count(*) from customers",
            "from orders where status <> 'abandoned'",
            # A customer with orders but none loaded lost their details.
            "select email from customers c where total_orders > 0 and not "
            "exists (select 1 from orders o where o.email = c.email)",
            "select coalesce(sum(total_orders), 0), coalesce(sum(total_revenue), 0) "
            "from customers",
        ),
    }[args.client.removesuffix("_par")]
    customers_sql, orders_from, missing_sql, listed_sql = queries
    with duckdb.connect(args.warehouse, read_only=True) as db:
        customers = db.execute(customers_sql).fetchone()[0]
        orders, revenue = db.execute(
            f"select count(*), coalesce(sum(total), 0) {orders_from}"
        ).fetchone()
        missing = [email for (email,) in db.execute(missing_sql).fetchall()]
        listed_orders, listed_revenue = db.execute(listed_sql).fetchone()
    return {
        "customers": int(customers),
        "orders": int(orders),
        "revenue": str(Decimal(str(revenue)).quantize(Decimal("0.01"))),
        "missing_details": len(missing),
        # What the emails without details hold that a path must encode.
        "missing_with": {
            mark: sum(mark in email for email in missing) for mark in "/%+"
        },
        "listed_orders": int(listed_orders),
        "listed_revenue": str(Decimal(str(listed_revenue)).quantize(Decimal("0.01"))),
    }


# -- the parent: emulators, runs, the table --------------------------------------


@dataclass
class Truth:
    """What the emulator serves: every list row's totals."""

    customers: int
    orders: int
    revenue: Decimal
    pages: int
    slash_emails: int


@dataclass
class Run:
    dataset: str
    latency_ms: float
    client: str
    phase: str
    seconds: float
    requests: int
    details_requests: int
    peak_rss: int
    rows: int
    correct: str
    sampled: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def read_truth(emulator: EmulatorProcess) -> Truth:
    """Pages the whole list (the counters are reset after) and sums it."""
    path = f"/brands/{emulator.brand}/customers"
    headers = {"EF-Access-Key": emulator.key}
    customers = orders = slash = pages = 0
    revenue = Decimal(0)
    with httpx.Client(base_url=emulator.base_url, headers=headers, timeout=60) as api:
        page, last = 1, 1
        while page <= last:
            params = {"page": page, "per_page": PAGE_SIZE, "sort": "customer_email"}
            response = api.get(path, params=params)
            response.raise_for_status()
            body = json.loads(response.content, parse_float=Decimal)
            last = body["last_page"]
            for row in body["data"]:
                customers += 1
                orders += row["total_orders"]
                revenue += row["total_revenue"]
                slash += "/" in row["customer_email"]
            pages += 1
            page += 1
    return Truth(customers, orders, revenue, pages, slash)


def spawn(
    client: str, phase: str, emulator: EmulatorProcess, workdir: Path, max_pages: int
) -> tuple[dict[str, Any], int]:
    """Runs one client in a child process; returns its figures and peak RSS."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--client",
        client,
        "--phase",
        phase,
        "--base-url",
        emulator.base_url,
        "--brand",
        emulator.brand,
        "--key",
        emulator.key,
        "--warehouse",
        str(workdir / f"{client}.duckdb"),
        "--max-pages",
        str(max_pages),
    ]
    env = {**os.environ, "RUNTIME__LOG_LEVEL": "WARNING"}
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )
    out, err = child.communicate()
    # communicate() has reaped the child; its rusage went to RUSAGE_CHILDREN,
    # whose maximum covers every child so far: take the child's own VmHWM,
    # which it prints, and fall back on that maximum.
    if child.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"{client} {phase} failed: " + " | ".join(tail))
    figures = json.loads(out.decode().strip().splitlines()[-1])
    return figures, int(figures.pop("peak_rss"))


def judge(figures: dict[str, Any], truth: Truth, sampled: bool) -> str:
    """`yes`, or what is wrong, against the emulator or within the sample."""
    problems = []
    if figures["missing_details"]:
        marks = ", ".join(
            f"{n} with {mark}" for mark, n in figures["missing_with"].items() if n
        )
        problems.append(f"{figures['missing_details']} without details ({marks})")
    if sampled:
        expected = (figures["listed_orders"], figures["listed_revenue"])
    else:
        if figures["customers"] != truth.customers:
            problems.append(f"{figures['customers']} customers of {truth.customers}")
        expected = (truth.orders, str(truth.revenue.quantize(Decimal("0.01"))))
    if figures["orders"] != expected[0]:
        problems.append(f"{figures['orders']} orders of {expected[0]}")
    if figures["revenue"] != expected[1]:
        problems.append("revenue off")
    return "yes" if not problems else "NO: " + ", ".join(problems)


def run_matrix(args: argparse.Namespace) -> list[Run]:
    """Every data set, latency and client: a full sync, a day, a second sync."""
    runs: list[Run] = []
    for dataset in args.datasets:
        serve = ["--as-of", CLOCK]
        if dataset == "cdnow":
            serve += ["--dataset", "cdnow"]
            if args.cdnow_customers:
                serve += ["--max-customers", str(args.cdnow_customers)]
        else:
            serve += ["--dataset", "synthetic", "--customers", str(args.synthetic)]
        name = "CDNOW" if dataset == "cdnow" else f"synthetic {args.synthetic:,}"
        for latency in args.latencies:
            with (
                tempfile.TemporaryDirectory() as tmp,
                EmulatorProcess(
                    *serve, *(["--latency-ms", str(latency)] if latency else [])
                ) as emulator,
            ):
                workdir = Path(tmp)
                truths = {"full": read_truth(emulator)}
                sampled_full: set[str] = set()
                for phase in ("full", "day"):
                    if phase == "day":
                        emulator.advance(DAY_SECONDS)
                        truths["day"] = read_truth(emulator)
                    truth = truths[phase]
                    for client in args.clients:
                        if phase == "day" and client in sampled_full - NEWEST:
                            # Its warehouse holds a sample: a day after it
                            # would fetch what the sample left out.
                            continue
                        cap = sample_pages(args, dataset, latency, client, phase)
                        if cap and phase == "full":
                            sampled_full.add(client)
                        emulator.reset_requests()
                        figures, rss = spawn(client, phase, emulator, workdir, cap)
                        requests = emulator.requests()
                        run = Run(
                            name,
                            latency,
                            client,
                            phase,
                            figures["seconds"],
                            requests["total"],
                            requests["details"],
                            rss,
                            figures["rows"],
                            judge(figures, truth, bool(cap) or client in sampled_full),
                            figures=figures,
                        )
                        if cap and requests["list"] >= cap:
                            scale_up(run, truth.pages, requests["list"])
                        runs.append(run)
                        print(row_text(run), flush=True)
    return runs


def sample_pages(
    args: argparse.Namespace, dataset: str, latency: float, client: str, phase: str
) -> int:
    """How many list pages a run may read; 0 for all of them."""
    if phase == "day" and client != "plain":
        return 0
    if dataset == "synthetic" and client not in args.full_synthetic:
        return args.sample_pages
    if client == "rest_api" and latency > 0:
        return args.sample_pages
    return 0


def scale_up(run: Run, pages: int, read: int) -> None:
    """Scales a sampled run's time, requests and rows to the whole list."""
    factor = pages / read
    run.seconds *= factor
    run.requests = round(run.requests * factor)
    run.details_requests = round(run.details_requests * factor)
    run.rows = round(run.rows * factor)
    if "insert_seconds" in run.figures:
        run.figures["insert_seconds"] = round(run.figures["insert_seconds"] * factor, 1)
    run.sampled = f"~ {read} of {pages} pages x{factor:.1f}"


HEADER = (
    "data set",
    "ms",
    "client",
    "sync",
    "wall s",
    "requests",
    "peak RSS",
    "rows",
    "right",
    "note",
)


def row_text(run: Run, markdown: bool = False) -> str:
    tilde = "~" if run.sampled else ""
    cells = (
        run.dataset,
        f"{run.latency_ms:g}",
        LABELS[run.client],
        "full" if run.phase == "full" else "+1 day",
        f"{tilde}{run.seconds:,.1f}",
        f"{tilde}{run.requests:,}",
        f"{run.peak_rss / 2**20:,.0f} MiB",
        f"{tilde}{run.rows:,}",
        run.correct,
        "; ".join(filter(None, (run.sampled, note(run)))),
    )
    if markdown:
        return "| " + " | ".join(cells) + " |"
    widths = (18, 3, 24, 6, 9, 10, 9, 11, 5, 0)
    return "  ".join(
        f"{c:>{w}}" if i in (1, 4, 5, 6, 7) else f"{c:<{w}}"
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def note(run: Run) -> str:
    notes = []
    if run.client == "plain" and run.phase == "day":
        notes.append("full reload")
    if "insert_seconds" in run.figures:
        tilde = "~" if run.sampled else ""
        notes.append(f"executemany {tilde}{run.figures['insert_seconds']:,.1f} s")
    return "; ".join(notes)


def verdicts(runs: list[Run]) -> list[str]:
    """The comparison's targets, each with what was measured."""
    found = []

    def one(dataset: str, ms: float, client: str, phase: str) -> Run | None:
        for run in runs:
            if (run.dataset, run.latency_ms, run.client, run.phase) == (
                dataset,
                ms,
                client,
                phase,
            ):
                return run
        return None

    for dataset in dict.fromkeys(run.dataset for run in runs):
        efw = one(dataset, 20, "efw", "full")
        for client, factor in (("rest_api", 3), ("plain", 3), ("rest_api_par", 1)):
            other = one(dataset, 20, client, "full")
            if efw is None or other is None:
                continue
            speedup = other.seconds / efw.seconds
            held = "holds" if speedup >= factor else "MISSED"
            found.append(
                f"{dataset}, 20 ms full: efw {speedup:.2f}x as fast as "
                f"{LABELS[client]} (target >= {factor}x): {held}"
            )
        for ms in dict.fromkeys(run.latency_ms for run in runs):
            day = one(dataset, ms, "efw", "day")
            full = one(dataset, ms, "efw", "full")
            if day is None or full is None:
                continue
            others = [
                run
                for run in runs
                if (run.dataset, run.latency_ms, run.phase) == (dataset, ms, "day")
                and run.client != "efw"
            ]
            fewer = all(day.requests < run.requests for run in others)
            faster = full.seconds / day.seconds
            found.append(
                f"{dataset}, {ms:g} ms, +1 day: efw {day.requests:,} requests vs "
                f"{', '.join(f'{r.requests:,}' for r in others)} "
                f"({'fewer: holds' if fewer else 'MISSED'}); "
                f"{faster:.0f}x faster than its full sync "
                f"({'holds' if faster >= 10 else 'MISSED'})"
            )
    return found


# -- memory: does efw's peak grow with the brand? -------------------------------


def run_memory(args: argparse.Namespace) -> int:
    sizes = [int(size) for size in args.memory.split(",")]
    print(f"machine: {machine()}")
    peaks = []
    pace = 0.0
    for size in sizes:
        if pace:
            print(f"{size:,} customers: about {size * pace / 60:,.0f} minutes")
        serve = ["--dataset", "synthetic", "--customers", str(size), "--as-of", CLOCK]
        with tempfile.TemporaryDirectory() as tmp, EmulatorProcess(*serve) as emulator:
            started = time.perf_counter()
            figures, rss = spawn("efw", "full", emulator, Path(tmp), 0)
            requests = emulator.requests()["total"]
            emulator_rss = emulator.peak_rss()
            # And the day after, on the whole warehouse.
            emulator.advance(DAY_SECONDS)
            truth = read_truth(emulator)
            emulator.reset_requests()
            day, day_rss = spawn("efw", "day", emulator, Path(tmp), 0)
            day_requests = emulator.requests()
        peaks.append(rss)
        pace = figures["seconds"] / size
        print(
            f"efw full sync of {size:,} synthetic customers at 0 ms: "
            f"{figures['seconds']:,.0f} s ({time.perf_counter() - started:,.0f} s "
            f"with start-up), {requests:,} requests, peak RSS "
            f"{rss / 2**20:,.0f} MiB (its largest normalize process "
            f"{figures.get('workers_peak_rss', 0) / 2**20:,.0f} MiB; emulator "
            f"{emulator_rss / 2**20:,.0f} MiB), "
            f"{figures['customers']:,} customers loaded",
            flush=True,
        )
        print(
            f"  a day later: {day['seconds']:,.1f} s, {day_requests['total']:,} "
            f"requests ({day_requests['list']:,} list, "
            f"{day_requests['details']:,} details), peak RSS "
            f"{day_rss / 2**20:,.0f} MiB, right: {judge(day, truth, False)}",
            flush=True,
        )
    growth = peaks[-1] / peaks[0] - 1
    print(
        f"peak memory grew {growth:+.0%} from {sizes[0]:,} to {sizes[-1]:,} "
        f"customers (target within 25%): {'holds' if growth <= 0.25 else 'MISSED'}"
    )
    return 0


# -- the command line -----------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", default="cdnow,synthetic", help="cdnow,synthetic (default)"
    )
    parser.add_argument("--latencies", default="0,20", help="ms, default 0,20")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--synthetic", type=int, default=200_000, metavar="N")
    parser.add_argument("--cdnow-customers", type=int, metavar="N", help="a part")
    parser.add_argument(
        "--sample-pages",
        type=int,
        default=30,
        metavar="P",
        help="list pages a capped run reads before stopping (default 30)",
    )
    parser.add_argument(
        "--full-synthetic",
        default="",
        help="clients to run over the whole synthetic set, e.g. efw,plain",
    )
    parser.add_argument("--memory", metavar="N,M", help="efw's peak memory at sizes")
    # A child process runs one client once.
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("full", "day"), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--brand", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", help=argparse.SUPPRESS)
    parser.add_argument("--max-pages", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.client:
        from benchmarks.sync import peak_rss_of

        figures = run_client(args)
        figures["peak_rss"] = peak_rss_of()
        # dlt's normalize processes, which a large efw run forks and joins:
        # the largest of them (its pages are partly the parent's, shared).
        figures["workers_peak_rss"] = (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        )
        print(json.dumps(figures))
        return 0
    if args.memory:
        return run_memory(args)

    args.datasets = args.datasets.split(",")
    args.latencies = [float(ms) for ms in args.latencies.split(",")]
    args.clients = args.clients.split(",")
    args.full_synthetic = set(filter(None, args.full_synthetic.split(",")))
    print(f"machine: {machine()}")
    print(
        f"Each client and the emulator run in separate processes on the same "
        f"{os.cpu_count()} cores; concurrency {CONCURRENCY} for efw, the plain "
        "script and rest_api's parallel workers."
    )
    print("  ".join(HEADER))
    runs = run_matrix(args)
    print()
    for line in verdicts(runs):
        print(line)
    print("\nThe same rows as a Markdown table, for BENCHMARKS.md:\n")
    print("| " + " | ".join(HEADER) + " |")
    print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
    for run in runs:
        print(row_text(run, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
