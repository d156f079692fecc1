"""`efw sync` and `efw demo`: progress, the summary, and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import functools
import glob
import inspect
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipelines.elasticfunnels.exceptions import EfwError

logger = logging.getLogger("efw")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_API = 3
EXIT_LOCKED = 4
# What a shell reports for a program stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

DEMO_WAREHOUSE = "efw-demo/warehouse.duckdb"


def add_parsers(commands: Any) -> None:
    sync = commands.add_parser(
        "sync",
        help="sync customers, orders and subscriptions into the warehouse",
        description=(
            "Sync the brand's customers and their details into the warehouse, "
            "then rebuild the models. Exit codes: 0 done, 2 configuration or "
            "auth error, 3 API failure, 4 warehouse locked, 130 interrupted "
            "(nothing loaded is lost), 1 anything else."
        ),
    )
    sync.add_argument(
        "--full",
        action="store_true",
        help="scan the whole customer list (a reconcile), not only what changed",
    )
    sync.add_argument("--warehouse", help="DuckDB file (default: [efw] warehouse)")
    sync.add_argument(
        "--no-models", action="store_true", help="load only; do not rebuild models"
    )
    sync.set_defaults(handler=sync_command)

    demo = commands.add_parser(
        "demo",
        help="run the whole job on the real CDNOW data through the local emulator",
    )
    demo.add_argument(
        "--warehouse",
        default=DEMO_WAREHOUSE,
        help=f"DuckDB file to create afresh (default: {DEMO_WAREHOUSE})",
    )
    demo.add_argument("--latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    demo.set_defaults(handler=demo_command)


def setup_logging(verbose: bool = False) -> None:
    level = os.environ.get("EFW_LOG_LEVEL", "DEBUG" if verbose else "INFO").upper()
    if sys.stderr.isatty():
        # Log lines above the live progress bar, not through it.
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=_console(sys.stderr), show_path=False
        )
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    else:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )


def sync_command(args: argparse.Namespace, **overrides: Any) -> int:
    from pipelines.sync import run_sync

    for name in ("EFW_LOG_LEVEL", "RUNTIME__LOG_LEVEL"):
        value = os.environ.get(name, "")
        if value and not isinstance(logging.getLevelName(value.upper()), int):
            print(
                f"efw: {name} is {value!r}; use DEBUG, INFO, WARNING, ERROR or "
                "CRITICAL, or unset it.",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    setup_logging()
    try:
        with Progress() as progress:
            code, result = guarded(
                lambda: run_sync(
                    full=args.full,
                    warehouse=args.warehouse,
                    build=not getattr(args, "no_models", False),
                    on_progress=progress.update,
                    **overrides,
                )
            )
    except KeyboardInterrupt:
        # Each load commits as a whole and a half-done extract is dropped, so
        # the next run finds the warehouse as the last finished step left it.
        print(
            "efw: the sync was interrupted; nothing it loaded is lost, and the "
            "next `efw sync` picks up from there.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if result is not None:
        print(summary(result))
    return code


def guarded(action: Any) -> tuple[int, Any]:
    """Runs `action`; maps what went wrong to an exit code and one message."""
    from dlt.common.configuration.exceptions import (
        ConfigFieldMissingException,
        ConfigValueCannotBeCoercedException,
    )

    try:
        return EXIT_OK, action()
    except EfwError as exc:
        print(f"efw: {exc}", file=sys.stderr)
        return exc.exit_code, None
    except ConfigFieldMissingException as exc:
        names = ", ".join(
            f"SOURCES__ELASTICFUNNELS__{field.upper()}" for field in exc.fields
        )
        one = len(exc.fields) == 1
        print(
            f"efw: missing {'setting' if one else 'settings'}: "
            f"{', '.join(exc.fields)}. Put {'it' if one else 'them'} under "
            "[sources.elasticfunnels] in .dlt/config.toml (the key in "
            f".dlt/secrets.toml), or set {names}.",
            file=sys.stderr,
        )
        return EXIT_CONFIG, None
    except ConfigValueCannotBeCoercedException as exc:
        print(f"efw: {_uncoercible(exc)}", file=sys.stderr)
        return EXIT_CONFIG, None


# A setting with such a name may hold a credential: its value is never shown.
_SECRET_NAME = re.compile(r"key|secret|password|token|credential", re.I)
_KINDS = {int: "a whole number", float: "a number", bool: "true or false"}


def _uncoercible(exc: Any) -> str:
    """Names the setting dlt could not convert, and its value unless secret."""
    from dlt.common.configuration.specs.base_configuration import is_secret_hint

    from pipelines.elasticfunnels import elasticfunnels

    field = exc.field_name
    secret = bool(_SECRET_NAME.search(field)) or is_secret_hint(exc.hint)
    kind = _KINDS.get(exc.hint, f"a {getattr(exc.hint, '__name__', exc.hint)}")
    value = "" if secret else f" {exc.field_value!r},"
    toml = ".dlt/secrets.toml" if secret else ".dlt/config.toml"
    if field in inspect.signature(elasticfunnels).parameters:
        where = (
            f"under [sources.elasticfunnels] in {toml} or in "
            f"SOURCES__ELASTICFUNNELS__{field.upper()}"
        )
    else:
        where = f"in {toml} or the environment variable that sets it"
    return f"The setting `{field}` is{value} not {kind}. Fix it {where}."


def summary(result: Any) -> str:
    run = result.run
    lines = [
        f"efw sync ({run.mode}) finished in {result.seconds:.1f} s",
        f"  customers listed   {run.listed:>9,}   new {run.new:,}, "
        f"changed {run.changed:,}, deleted {run.deleted:,}",
        f"  details fetched    {run.details_fetched:>9,}   "
        f"not found {run.details_missing:,}",
        f"  requests           {result.requests:>9,}   retries {result.retries:,}",
        f"  quarantined rows   {run.quarantined:>9,}   "
        f"(duplicate emails {run.duplicates:,})",
    ]
    if result.resumed_packages:
        lines.append(
            f"  resumed            {result.resumed_packages:>9,}   "
            "package(s) an earlier run left unloaded"
        )
    lines.append(f"  warehouse          {result.warehouse}")
    if result.published:
        lines.append(f"  published copy     {result.published}")
    return "\n".join(lines)


class Progress:
    """A live bar on a terminal; a log line every few seconds elsewhere.

    The bar counts customers listed against the total the API reports, when
    the scan reads the whole list; an incremental scan has no total to show.
    """

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._started = time.monotonic()
        self._last_line = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.interactive:
            from rich.progress import (
                BarColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[details]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
                console=_console(self.stream),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("starting", total=None, details="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def update(self, run: Any) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        details = (
            f"details {run.details_fetched:,}/{run.details_queued:,} "
            f"({run.details_fetched / elapsed:,.0f}/s)"
        )
        if self._bar is not None:
            self._bar.update(
                self._task,
                description=f"{run.mode} scan: {run.pages:,} pages",
                completed=run.listed,
                total=run.expected or None,
                details=details,
            )
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_line < 5:
                return
            self._last_line = now
        of_total = f" of {run.expected:,}" if run.expected else ""
        logger.info(
            "%s scan: %s pages, %s%s customers listed, %s",
            run.mode,
            f"{run.pages:,}",
            f"{run.listed:,}",
            of_total,
            details,
        )


@functools.cache
def _console(stream: Any) -> Any:
    # One console per stream: rich prints log records above a live bar only
    # when both go through the same console.
    from rich.console import Console

    return Console(file=stream)


def demo_command(args: argparse.Namespace) -> int:
    """Serves the CDNOW data on a free loopback port and syncs it afresh."""
    from pipelines.models import published_path
    from pipelines.sync import default_pipelines_dir, resolve_paths, sync_running

    try:
        warehouse = resolve_paths(args.warehouse).warehouse
    except EfwError as exc:
        print(f"efw demo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # The demo keeps dlt's working folder beside its warehouse, whatever
    # `[efw] pipelines_dir` says.
    working = default_pipelines_dir(warehouse)
    if sync_running(warehouse):
        print(
            f"efw demo: an `efw sync` is writing {warehouse}; wait for it to "
            "finish, or pass --warehouse with a new path.",
            file=sys.stderr,
        )
        return EXIT_LOCKED
    made = [p for p in (warehouse, published_path(warehouse)) if p.exists()]
    for path in made:
        ours = _made_by_the_demo(path)
        if ours is False:
            print(
                f"efw demo: {path} was not made by `efw demo`, which starts "
                "afresh by deleting the warehouse and its published copy. Pass "
                "--warehouse with a new path.",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        if ours is None or _held_open(path):
            print(
                f"efw demo: another program has {path} open; close it and "
                "run the demo again.",
                file=sys.stderr,
            )
            return EXIT_LOCKED
    if made:
        _remove_demo(warehouse, working)

    print("Starting the ElasticFunnels emulator with the CDNOW purchase history...")
    with emulator_process(latency_ms=args.latency_ms) as (base_url, brand, key):
        print(f"Emulator at {base_url}, brand {brand}. Syncing into {warehouse}")
        sync_args = argparse.Namespace(full=True, warehouse=str(warehouse))
        # An empty setting means dlt's folder beside the warehouse.
        with _environment(EFW__PIPELINES_DIR=""):
            code = sync_command(
                sync_args, base_url=base_url, brand=brand, access_key=key, demo=True
            )
    if code == EXIT_OK:
        print(
            DEMO_QUERIES.format(
                published=published_path(warehouse), warehouse=_shown(warehouse)
            )
        )
    return code


def _shown(path: Path) -> str:
    """`path` relative to the working folder when it lies below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _made_by_the_demo(path: Path) -> bool | None:
    """Whether the DuckDB file at `path` is one `efw demo` may replace: its
    last sync recorded that the demo made it, or it holds no table at all (a
    demo stopped before its first load). None when another program writes
    it and it cannot be read."""
    import duckdb

    from pipelines.sync import DATASET_NAME, PIPELINE_NAME, source_state_of

    try:
        with duckdb.connect(str(path), read_only=True) as con:
            tables = con.sql(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
            if not tables:
                return True  # nothing in it to lose
            if (DATASET_NAME, "_dlt_pipeline_state") not in tables:
                return False
            row = con.execute(
                f"select state from {DATASET_NAME}._dlt_pipeline_state "
                "where pipeline_name = ? order by created_at desc limit 1",
                [PIPELINE_NAME],
            ).fetchone()
    except duckdb.Error as exc:
        return None if "lock" in str(exc).lower() else False
    if row is None:
        return False
    return source_state_of(row[0]).get("demo") is True


def _held_open(path: Path) -> bool:
    """Whether another program has the DuckDB file at `path` open, to read or
    to write: opening it to write conflicts with either."""
    import duckdb

    try:
        duckdb.connect(str(path)).close()
    except duckdb.Error as exc:
        return "lock" in str(exc).lower()
    return False


@contextlib.contextmanager
def _environment(**values: str) -> Any:
    """Sets environment variables for the block, then puts back what was."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _remove_demo(warehouse: Path, pipelines_dir: Path) -> None:
    """Deletes a demo's warehouse, its published copy and dlt's working folder
    for it; the lock file stays, as a running sync may hold it."""
    from pipelines.models import published_path
    from pipelines.sync import PIPELINE_NAME

    published = published_path(warehouse)
    for path in (warehouse, published):
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    for temp in warehouse.parent.glob(f".{glob.escape(published.name)}.*.tmp"):
        temp.unlink(missing_ok=True)
    shutil.rmtree(pipelines_dir / PIPELINE_NAME, ignore_errors=True)


DEMO_QUERIES = """
Try it, read-only, on the published copy {published}:

  # what a customer is worth, by cohort, at 1, 3, 6 and 12 months
  .venv/bin/efw query --warehouse {warehouse} \\
    "select * from marts.cohort_ltv order by cohort_month"

  # the first year of each monthly cohort
  .venv/bin/efw query --warehouse {warehouse} --max-rows 60 \\
    "select cohort_month, period_number, cohort_size, retention_rate
     from marts.cohort_retention where period_number <= 12 order by 1, 2"

  # who the best and the slipping customers are
  .venv/bin/efw query --warehouse {warehouse} \\
    "select segment, count(*) as customers, round(sum(net_revenue), 2) as revenue
     from marts.rfm_segments group by segment order by revenue desc"

or in the DuckDB shell, if installed: duckdb -readonly {published}
"""


class emulator_process:
    """Runs `efw emulator serve --port 0` as a child and reads its address."""

    def __init__(self, **faults: Any) -> None:
        self.faults = faults
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> tuple[str, str, str]:
        from pipelines.emulator import DEFAULT_BRAND, DEFAULT_KEY

        command = [
            sys.executable,
            "-m",
            "pipelines.emulator",
            "serve",
            "--port",
            "0",
            "--dataset",
            "cdnow",
            "--brand",
            DEFAULT_BRAND,
            "--key",
            DEFAULT_KEY,
        ]
        if self.faults.get("latency_ms"):
            command += ["--latency-ms", str(self.faults["latency_ms"])]
        from pipelines.sync import die_with_parent

        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            # Killed with the demo, however the demo ends (SIGTERM, SIGKILL).
            preexec_fn=die_with_parent,
        )

        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("EFW_EMULATOR_BASE_URL="):
            self.__exit__()
            raise RuntimeError("the emulator did not start; run it alone to see why")
        # Keep reading its output so a full pipe never blocks it.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return line.split("=", 1)[1], DEFAULT_BRAND, DEFAULT_KEY

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
