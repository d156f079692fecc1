"""How fast the emulator answers, and how much memory a million customers take.

Run with `.venv/bin/python benchmarks/emulator.py` (add `--customers N` to try
another synthetic size). Every request goes through the in-process httpx
transport, so the figures are the emulator's own cost: routing, the store,
JSON, but no socket. Prints one table, each figure beside its target.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx

# Run as a script from a checkout: make `pipelines` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY, Emulator  # noqa: E402

BASE_URL = "http://emulator.bench/api"
LIST_PATH = f"/brands/{DEFAULT_BRAND}/customers"
PAGE_SIZE = 100
ROUNDS = 5


def timed(action: Callable[[], object]) -> tuple[object, float]:
    """Run `action`; return its result and the seconds it took."""
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def measure(emulator: Emulator) -> dict[str, float]:
    """Cold and median warm times of list pages sorted by last order, newest first."""
    headers = {"EF-Access-Key": DEFAULT_KEY}
    client = httpx.Client(
        transport=emulator.transport(), base_url=BASE_URL, headers=headers
    )
    with client:

        def page(number: int) -> float:
            params = {
                "per_page": PAGE_SIZE,
                "page": number,
                "sort": "last_order_date",
                "sort_direction": "desc",
            }
            response, seconds = timed(lambda: client.get(LIST_PATH, params=params))
            assert response.status_code == 200, response.text
            assert len(response.json()["data"]) == PAGE_SIZE
            return seconds

        total = client.get(f"{LIST_PATH}/quick-access").json()["all"]
        last = total // PAGE_SIZE
        numbers = sorted({1, 2, 10, max(1, last // 2), last})
        cold = page(1)  # the first request computes the snapshot and sort
        warm = [page(number) for _ in range(ROUNDS) for number in numbers]

        first = client.get(LIST_PATH, params={"per_page": 1}).json()["data"][0]
        details_path = f"{LIST_PATH}/{quote(first['customer_email'], safe='')}/details"
        details = [
            timed(lambda: client.get(details_path))[1] for _ in range(ROUNDS * 4)
        ]
    return {
        "customers": total,
        "cold": cold,
        "median": statistics.median(warm),
        "details": statistics.median(details),
        "pages": len(numbers),
    }


def main(argv: list[str] | None = None) -> int:
    """Build both data sets, time them, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    cdnow, cdnow_build = timed(Emulator.cdnow)
    cdnow_figures = measure(cdnow)
    del cdnow

    synthetic, synthetic_build = timed(lambda: Emulator.synthetic(args.customers))
    synthetic_figures = measure(synthetic)
    peak = peak_rss_bytes()

    ms = 1000.0
    size = f"{args.customers:,} synthetic"
    rows = [
        ("CDNOW build", f"{cdnow_build:.2f} s", "-"),
        (
            f"CDNOW ({cdnow_figures['customers']:,}) first page, cold",
            f"{cdnow_figures['cold'] * ms:.1f} ms",
            "-",
        ),
        (
            "CDNOW page of 100, median",
            f"{cdnow_figures['median'] * ms:.2f} ms",
            "< 20 ms",
        ),
        ("CDNOW details, median", f"{cdnow_figures['details'] * ms:.2f} ms", "-"),
        (f"{size} build", f"{synthetic_build:.2f} s", "-"),
        (
            f"{size} first page, cold",
            f"{synthetic_figures['cold'] * ms:.1f} ms",
            "-",
        ),
        (
            f"{size} page of 100, median",
            f"{synthetic_figures['median'] * ms:.2f} ms",
            "< 50 ms",
        ),
        (
            f"{size} details, median",
            f"{synthetic_figures['details'] * ms:.2f} ms",
            "-",
        ),
        ("peak RSS, whole run", f"{peak / 2**30:.2f} GiB", "< 4 GiB"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    header = ("measure", "figure", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:<{widths[2]}}")
    pages = synthetic_figures["pages"]
    print(
        f"\nMedians over {ROUNDS} rounds of {pages} pages (first, second, tenth, "
        "middle, last), sorted by last_order_date desc, through the transport."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
