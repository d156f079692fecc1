"""How close a full efw sync comes to the request floor, and what a day costs.

Run with `.venv/bin/python benchmarks/sync.py` (about two minutes). It starts
the emulator as a separate process over loopback HTTP, so the server's work
never competes with the sync for the GIL, serving the CDNOW data with 20 ms
of latency a request and its clock at 1998-06-15. Then:

1. a full sync into a new warehouse, timed against the floor: requests x
   latency / concurrency, the time the requests alone need at efw's
   concurrency, whatever the client does;
2. the clock moves one day, and an incremental sync runs. Its requests are
   weighed against the customers whose list row changed that day (diffed
   from two reads of the whole list), plus two list pages and the one
   quick-access call every sync makes.

Options: `--max-customers N` for a quick try on part of CDNOW, `--latency-ms`,
`--concurrency`. The figures are the process's own: both processes share the
machine's cores, so on a small machine the emulator's CPU still slows the
client down even without the GIL in common.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

# Run as a script from a checkout: make `pipelines` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.elasticfunnels import settings  # noqa: E402

CLOCK = "1998-06-15T00:00:00+00:00"
DAY_SECONDS = 86_400
PAGE_SIZE = 100


class EmulatorProcess:
    """`python -m pipelines.emulator serve --port 0 ...` as a child process.

    Knows its base URL, brand and key from the banner, and drives the admin
    routes: the clock and the request counters.
    """

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process: subprocess.Popen[str] | None = None
        self.base_url = self.brand = self.key = ""

    def __enter__(self) -> EmulatorProcess:
        command = [sys.executable, "-m", "pipelines.emulator", "serve"]
        command += ["--port", "0", *self.args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self.process.stdout is not None
        banner: dict[str, str] = {}
        while len(banner) < 3:
            line = self.process.stdout.readline()
            if not line:
                self.__exit__()
                raise RuntimeError("the emulator did not start; run it alone")
            name, _, value = line.strip().partition("=")
            if name.startswith("EFW_EMULATOR_"):
                banner[name] = value
        # Keep draining its output so a full pipe never blocks it.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.base_url = banner["EFW_EMULATOR_BASE_URL"]
        self.brand = banner["EFW_EMULATOR_BRAND"]
        self.key = banner["EFW_EMULATOR_KEY"]
        self.admin = httpx.Client(
            base_url=self.base_url.removesuffix("/api") + "/_emulator", timeout=60
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def source_args(self) -> dict[str, str]:
        return {"base_url": self.base_url, "brand": self.brand, "access_key": self.key}

    def requests(self) -> dict[str, int]:
        """Customer-route requests since the last reset, by route."""
        counts = self.admin.get("/stats").json()["counts"]
        routes = ("list", "details", "quick_access", "export")
        found = {route: int(counts.get(route, 0)) for route in routes}
        # Every answer counts under its status, routed or not (a path broken
        # by an unencoded `/` is no route, but still a request).
        found["total"] = sum(n for key, n in counts.items() if key.isdigit())
        return found

    def reset_requests(self) -> None:
        self.admin.post("/stats/reset").raise_for_status()

    def set_clock(self, as_of: str) -> None:
        self.admin.post("/clock", json={"as_of": as_of}).raise_for_status()

    def advance(self, seconds: float) -> None:
        self.admin.post("/clock", json={"advance_seconds": seconds}).raise_for_status()

    def peak_rss(self) -> int:
        return peak_rss_of(self.pid)

    def cpu_seconds(self) -> float:
        """User and system CPU the emulator has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_of(pid: int | str = "self") -> int:
    """Peak resident set size in bytes, from /proc (VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid != "self":
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Starts this process's peak RSS afresh (Linux); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def list_snapshot(emulator: EmulatorProcess, concurrency: int = 8) -> dict[str, str]:
    """Every customer's list row as the emulator serves it now, hashed."""
    path = f"/brands/{emulator.brand}/customers"
    headers = {"EF-Access-Key": emulator.key}

    with httpx.Client(base_url=emulator.base_url, headers=headers, timeout=60) as api:

        def page(number: int) -> list[dict[str, Any]]:
            params = {
                "page": number,
                "per_page": PAGE_SIZE,
                "sort": "customer_email",
                "sort_direction": "asc",
            }
            response = api.get(path, params=params)
            response.raise_for_status()
            return response.json()["data"]

        first = api.get(path, params={"per_page": PAGE_SIZE}).json()
        with ThreadPoolExecutor(concurrency) as pool:
            pages = pool.map(page, range(1, first["last_page"] + 1))
            rows = [row for data in pages for row in data]
    return {
        row["customer_email"]: hashlib.blake2b(
            json.dumps(row, sort_keys=True).encode(), digest_size=16
        ).hexdigest()
        for row in rows
    }


def bare_client_ms(
    emulator: EmulatorProcess, emails: list[str], concurrency: int
) -> float:
    """Milliseconds a details request costs a bare httpx thread pool (no
    storage, no checks) at `concurrency`: the most any client gets from this
    emulator on this machine, as wall time x concurrency / requests."""
    prefix = f"/brands/{emulator.brand}/customers"
    params = {"include_orders": "true", "include_subscriptions": "true"}
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"EF-Access-Key": emulator.key}
    with httpx.Client(
        base_url=emulator.base_url, headers=headers, limits=limits, timeout=60
    ) as api:

        def fetch(email: str) -> None:
            api.get(f"{prefix}/{quote(email, safe='')}/details", params=params).json()

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(fetch, emails))
        return (time.perf_counter() - started) * concurrency / len(emails) * 1000


def changed_between(before: dict[str, str], after: dict[str, str]) -> int:
    """Customers new in `after` or whose list row differs from `before`."""
    return sum(1 for email, row in after.items() if before.get(email) != row)


def timed_sync(warehouse: Path, **kwargs: Any) -> tuple[Any, dict[str, float]]:
    """One `run_sync`; returns the result and the seconds of each step: up to
    the end of extract, normalize and load, and the model build after it."""
    from pipelines.sync import run_sync

    marks: dict[str, float] = {}

    def mark(name: str) -> Any:
        return lambda: marks.setdefault(name, time.perf_counter())

    steps = ("after_pending", "after_extract", "after_normalize", "after_load")
    started = time.perf_counter()
    result = run_sync(
        warehouse=warehouse, hooks={step: mark(step) for step in steps}, **kwargs
    )
    ended = time.perf_counter()
    loaded = marks.get("after_load", ended)
    return result, {
        "setup": marks["after_pending"] - started,
        "extract": marks["after_extract"] - marks["after_pending"],
        "normalize": marks["after_normalize"] - marks["after_extract"],
        "load": loaded - marks["after_normalize"],
        "loaded": loaded - started,
        "build": ended - loaded,
    }


def machine() -> str:
    import dlt
    import duckdb

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python "
        f"{sys.version.split()[0]}, dlt {dlt.__version__}, duckdb "
        f"{duckdb.__version__}"
    )


def _pair(steps: dict[str, float], first: str, second: str) -> str:
    return f"{steps[first]:.1f} s / {steps[second]:.1f} s"


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def table(rows: list[tuple[str, str, str]]) -> str:
    header = ("measure", "figure", "target")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(3)]
    lines = []
    for row in (header, tuple("-" * w for w in widths), *rows):
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Serve CDNOW, sync it in full, move a day, sync again; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-customers", type=int, help="part of CDNOW only")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=settings.DEFAULT_CONCURRENCY)
    parser.add_argument("--no-models", action="store_true", help="skip the build")
    args = parser.parse_args(argv)

    serve = ["--dataset", "cdnow", "--as-of", CLOCK]
    if args.latency_ms:
        serve += ["--latency-ms", str(args.latency_ms)]
    if args.max_customers:
        serve += ["--max-customers", str(args.max_customers)]
    print(f"machine: {machine()}")
    print(
        "The emulator runs in its own process; both share the machine's "
        f"{os.cpu_count()} cores."
    )

    with tempfile.TemporaryDirectory() as workdir, EmulatorProcess(*serve) as emulator:
        warehouse = Path(workdir) / "bench.duckdb"
        before = list_snapshot(emulator)
        source_args = {**emulator.source_args(), "concurrency": args.concurrency}
        bare_ms = bare_client_ms(emulator, sorted(before)[:2000], args.concurrency)

        emulator.reset_requests()
        reset_peak_rss()
        cpu_before = (time.process_time(), emulator.cpu_seconds())
        full, full_steps = timed_sync(
            warehouse, full=True, build=not args.no_models, **source_args
        )
        full_requests = emulator.requests()
        client_cpu = time.process_time() - cpu_before[0]
        emulator_cpu = emulator.cpu_seconds() - cpu_before[1]
        full_rss = peak_rss_of()

        emulator.advance(DAY_SECONDS)
        after = list_snapshot(emulator)
        changed = changed_between(before, after)
        emulator.reset_requests()
        reset_peak_rss()
        day, day_steps = timed_sync(warehouse, build=not args.no_models, **source_args)
        day_requests = emulator.requests()
        day_rss = peak_rss_of()
        emulator_rss = emulator.peak_rss()

    latency = args.latency_ms / 1000
    floor = full_requests["total"] * latency / args.concurrency
    ratio = full_steps["loaded"] / floor if floor else float("nan")
    requests = max(full_requests["total"], 1)
    allowed = changed + 2 + 1
    size = f"CDNOW{f' (first {args.max_customers:,})' if args.max_customers else ''}"
    rows = [
        (f"{size}: customers listed", f"{full.run.listed:,}", "-"),
        (
            "full: requests (list / details / quick-access)",
            f"{full_requests['total']:,} ({full_requests['list']:,} / "
            f"{full_requests['details']:,} / {full_requests['quick_access']})",
            "-",
        ),
        ("full: wall time to loaded", f"{full_steps['loaded']:.1f} s", "-"),
        ("  of which setup / extract", _pair(full_steps, "setup", "extract"), "-"),
        ("  of which normalize / load", _pair(full_steps, "normalize", "load"), "-"),
        (
            f"full: floor (requests x {args.latency_ms:g} ms / {args.concurrency})",
            f"{floor:.1f} s",
            "-",
        ),
        ("full: ratio to the floor", f"{ratio:.2f}x", "<= 1.3x"),
        (
            "bare httpx pool: ms a request, x the latency",
            f"{bare_ms:.1f} ms, {bare_ms / args.latency_ms:.2f}x"
            if args.latency_ms
            else f"{bare_ms:.1f} ms",
            "-",
        ),
        (
            "full: CPU a request, client / emulator",
            f"{client_cpu / requests * 1000:.1f} / "
            f"{emulator_cpu / requests * 1000:.1f} ms",
            "-",
        ),
        (
            "full: cores both need at the floor's pace",
            f"{(client_cpu + emulator_cpu) / floor:.2f} of {os.cpu_count()}"
            if floor
            else "-",
            "-",
        ),
        ("full: model build and publish after", f"{full_steps['build']:.1f} s", "-"),
        ("full: peak RSS of the sync process", mib(full_rss), "-"),
        ("day: customers whose list row changed", f"{changed:,}", "-"),
        (
            "day: requests (list / details / quick-access)",
            f"{day_requests['total']:,} ({day_requests['list']:,} / "
            f"{day_requests['details']:,} / {day_requests['quick_access']})",
            f"<= {allowed:,}",
        ),
        (
            "day: efw saw new / changed",
            f"{day.run.new:,} / {day.run.changed:,}",
            "-",
        ),
        ("day: wall time to loaded", f"{day_steps['loaded']:.1f} s", "-"),
        ("  of which setup / extract", _pair(day_steps, "setup", "extract"), "-"),
        ("  of which normalize / load", _pair(day_steps, "normalize", "load"), "-"),
        ("day: model build and publish after", f"{day_steps['build']:.1f} s", "-"),
        ("day: peak RSS of the sync process", mib(day_rss), "-"),
        ("emulator: peak RSS (its own process)", mib(emulator_rss), "-"),
    ]
    print()
    print(table(rows))
    print(
        f"\nThe day's allowance is the changed customers, two list pages and "
        f"the quick-access call every sync makes ({changed:,} + 2 + 1). "
        f"Latency {args.latency_ms:g} ms a request; efw concurrency "
        f"{args.concurrency}. The ratio uses the time up to the end of the "
        "load; the model build is shown apart. The bare pool fetches 2,000 "
        "details with nothing else to do: what this emulator and machine allow "
        "any client, before storage or checks."
    )
    held = ratio <= 1.3 and day_requests["total"] <= allowed
    print("targets: " + ("held" if held else "MISSED (see above)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
