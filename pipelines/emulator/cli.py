"""`efw emulator serve`: run the API emulator until Ctrl-C.

The first line on stdout is exactly `EFW_EMULATOR_BASE_URL=<url>`, flushed at
once, so another program can start the emulator with `--port 0` and read
where it listens. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import Any

from pipelines.emulator.app import DEFAULT_BRAND, DEFAULT_KEY, Emulator, iso
from pipelines.emulator.faults import BAD_DATA_KINDS, Faults, FaultsError

#: Fault flags: (flag, Faults field, argparse options).
_FAULT_FLAGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--latency-ms", "latency_ms", {"type": float, "metavar": "MS"}),
    ("--jitter-ms", "jitter_ms", {"type": float, "metavar": "MS"}),
    ("--rate-429", "rate_429", {"type": float, "metavar": "P"}),
    ("--rps-budget", "rps_budget", {"type": float, "metavar": "N"}),
    ("--retry-after", "retry_after", {"metavar": "N|date:N|none"}),
    ("--rate-5xx", "rate_5xx", {"type": float, "metavar": "P"}),
    ("--5xx-status", "statuses_5xx", {"metavar": "CODE,..."}),
    ("--5xx-body", "body_5xx", {"choices": ("json", "html")}),
    ("--rate-drop", "rate_drop", {"type": float, "metavar": "P"}),
    ("--rate-stall", "rate_stall", {"type": float, "metavar": "P"}),
    ("--stall-seconds", "stall_seconds", {"type": float, "metavar": "S"}),
    ("--es-window", "es_window", {"action": "store_const", "const": True}),
    ("--visibility-delay", "visibility_delay_seconds", {"type": float, "metavar": "S"}),
    ("--page-drift", "page_drift_seconds", {"type": float, "metavar": "S"}),
    ("--bad-data", "bad_data", {"metavar": "KIND,..."}),
)

_FAULT_HELP = {
    "latency_ms": "answer each request this long after it arrives",
    "jitter_ms": "plus a random extra of up to this long",
    "rate_429": "probability of a 429",
    "rps_budget": "answer 429 above this many requests a second",
    "retry_after": "Retry-After on 429s: seconds, date:SECONDS or none (default 1)",
    "rate_5xx": "probability of a 5xx",
    "statuses_5xx": "statuses to draw 5xx from (default 500,502,503,504)",
    "body_5xx": "body of 5xx answers (default json)",
    "rate_drop": "probability of closing the connection without an answer",
    "rate_stall": "probability of answering only after --stall-seconds",
    "stall_seconds": "how long a stall lasts (default 30)",
    "es_window": "fail list pages past Elasticsearch's 10,000 result window",
    "visibility_delay_seconds": "hide events younger than this from lists",
    "page_drift_seconds": "advance the clock this much after each list page",
    "bad_data": f"inject bad data: {', '.join(BAD_DATA_KINDS)}",
}


def add_parser(subparsers: Any) -> None:
    """Register `emulator` (with its `serve` subcommand) on `efw`'s parser."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the ElasticFunnels API emulator",
        description="The ElasticFunnels customers API, emulated locally.",
    )
    _add_commands(parser)


def _add_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="emulator_command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the emulator over HTTP until Ctrl-C",
        description=(
            "Serve the emulated API until stopped. The first stdout line is "
            "EFW_EMULATOR_BASE_URL=<url>; --port 0 picks a free port."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument(
        "--port", type=_bounded(0, 65_535), default=8080, help="default 8080"
    )
    serve.add_argument("--brand", default=DEFAULT_BRAND, help="brand id to serve")
    serve.add_argument("--key", default=DEFAULT_KEY, help="access key to accept")
    serve.add_argument("--dataset", choices=("cdnow", "synthetic"), default="cdnow")
    serve.add_argument(
        "--customers",
        type=_bounded(1, 100_000_000),
        default=10_000,
        metavar="N",
        help="customers to generate with --dataset synthetic (default 10000)",
    )
    serve.add_argument(
        "--max-customers",
        type=_bounded(1, 100_000_000),
        metavar="N",
        help="keep only the first N CDNOW customers",
    )
    serve.add_argument(
        "--as-of", metavar="ISO", help="the emulator clock (default 1998-07-01)"
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="seeds the data extras and the faults"
    )

    faults = serve.add_argument_group("faults (all off by default)")
    for flag, name, options in _FAULT_FLAGS:
        faults.add_argument(flag, dest=name, help=_FAULT_HELP[name], **options)
    serve.set_defaults(handler=serve_command)


def _bounded(low: int, high: int) -> Any:
    """An argparse type: a whole number from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be {low:,} to {high:,}, not {value:,}"
            )
        return value

    return parse


def serve_command(args: argparse.Namespace) -> int:
    """Build the emulator the flags describe and serve it until interrupted."""
    from pipelines.emulator.server import base_url, bind_socket, serve_forever

    faults = Faults(seed=args.seed)
    changes = {
        name: getattr(args, name)
        for _, name, _ in _FAULT_FLAGS
        if getattr(args, name) is not None
    }
    try:
        faults.update(changes)
        as_of = _parse_as_of(args.as_of)
    except (FaultsError, ValueError) as exc:
        print(f"efw emulator: {exc}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    print(f"efw emulator: loading the {args.dataset} data set...", file=sys.stderr)
    common = {"seed": args.seed, "as_of": as_of, "brand": args.brand}
    common.update(key=args.key, faults=faults)
    if args.dataset == "synthetic":
        emulator = Emulator.synthetic(args.customers, **common)
    else:
        emulator = Emulator.cdnow(max_customers=args.max_customers, **common)
    customers = len(emulator.store.emails())
    took = time.perf_counter() - started

    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(
            f"efw emulator: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    url = base_url(sock)
    _print_banner(url, emulator, args, customers, took)
    try:
        serve_forever(emulator, sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


def _parse_as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--as-of {text!r} is not an ISO-8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print_banner(
    url: str,
    emulator: Emulator,
    args: argparse.Namespace,
    customers: int,
    took: float,
) -> None:
    # The first line is a contract with programs that start the emulator.
    print(f"EFW_EMULATOR_BASE_URL={url}", flush=True)
    admin = url.removesuffix("/api") + "/_emulator"
    list_url = f"{url}/brands/{emulator.brand}/customers?per_page=5"
    header = f"EF-Access-Key: {emulator.key}"
    active = {
        name: value
        for name, value in emulator.faults.to_dict().items()
        if value != Faults().to_dict()[name] and name != "seed"
    }
    lines = [
        f"EFW_EMULATOR_BRAND={emulator.brand}",
        f"EFW_EMULATOR_KEY={emulator.key}",
        "",
        f"ElasticFunnels emulator: {args.dataset}, {customers:,} customers, "
        f"clock at {iso(emulator.as_of)} (built in {took:.1f} s)",
        "Faults: "
        + (", ".join(f"{k}={v}" for k, v in active.items()) if active else "none"),
        "Try:",
        f"  curl -H {shlex.quote(header)} {shlex.quote(list_url)}",
        f"Admin (no key): {admin}/{{clock,faults,stats}}",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.emulator`: the same commands as `efw emulator`."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.emulator",
        description="The ElasticFunnels customers API, emulated locally.",
    )
    _add_commands(parser)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)
