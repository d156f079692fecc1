"""Build the SQL models over the raw dlt tables, test them, publish and export.

The models live as plain SQL files under `sql/`: `staging/` holds one view a
raw table, `marts/` one table a question analysts ask, `tests/` one query a
rule, returning the rows that break it. This module finds the files, orders
them by the references between them, and runs them through any connection
that has `execute` (DuckDB in practice; the DuckDB-only parts are publishing
and exporting, which work on files).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

RAW_SCHEMA = "elasticfunnels"

# Each layer is a folder of `sql/` and a schema of the warehouse, built as
# views (cheap, always current) or tables (what BI tools read).
LAYERS = {"staging": "view", "marts": "table"}

# What the staging views read from the raw dlt tables. A young warehouse may
# lack a table (no subscription synced yet) or a column (dlt creates none for
# a field that has only ever been null), and a view over it would not build.
# So the runner creates what is missing, empty and with these types, which are
# the ones dlt gives the same columns: a later load fills them in place.
RAW_TABLES: dict[str, dict[str, str]] = {
    "customers": {
        "email_key": "varchar",
        "customer_email": "varchar",
        "customer_name": "varchar",
        "customer_first_name": "varchar",
        "customer_last_name": "varchar",
        "customer_phone": "varchar",
        "customer_country": "varchar",
        "customer_state": "varchar",
        "customer_city": "varchar",
        "first_order_date": "timestamptz",
        "last_order_date": "timestamptz",
        "total_orders": "bigint",
        "total_revenue": "decimal(14, 2)",
        "total_refunds": "decimal(14, 2)",
        "total_chargebacks": "decimal(14, 2)",
        "lifetime_value": "decimal(14, 2)",
        "order_frequency": "bigint",
        "products_purchased": "bigint",
        "is_abandoned_customer": "boolean",
        "abandoned_value": "decimal(14, 2)",
        "synced_at": "timestamptz",
        "deleted_at": "timestamptz",
        "_dlt_load_id": "varchar",
        "_dlt_id": "varchar",
    },
    "details": {
        "email_key": "varchar",
        "_dlt_load_id": "varchar",
        "_dlt_id": "varchar",
    },
    "details__orders": {
        "id": "varchar",
        "date": "timestamptz",
        "total": "decimal(14, 2)",
        "status": "varchar",
        "_dlt_parent_id": "varchar",
        "_dlt_root_id": "varchar",
        "_dlt_list_idx": "bigint",
        "_dlt_id": "varchar",
    },
    "details__orders__products": {
        "value": "varchar",
        "_dlt_parent_id": "varchar",
        "_dlt_root_id": "varchar",
        "_dlt_list_idx": "bigint",
        "_dlt_id": "varchar",
    },
    "details__subscriptions": {
        "id": "bigint",
        "status": "varchar",
        "product": "varchar",
        "next_charge_date": "date",
        "_dlt_parent_id": "varchar",
        "_dlt_root_id": "varchar",
        "_dlt_list_idx": "bigint",
        "_dlt_id": "varchar",
    },
    "quick_access": {
        "run_at": "timestamptz",
        "all_customers": "bigint",
        "customers": "bigint",
        "abandons": "bigint",
        "chargebacks": "bigint",
        "refunds": "bigint",
        "_dlt_load_id": "varchar",
        "_dlt_id": "varchar",
    },
}

EXPORT_FORMATS = ("parquet", "csv")
SAMPLE_ROWS = 5

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_REFERENCE = re.compile(r"\b(staging|marts|elasticfunnels)\.([a-z_][a-z0-9_]*)\b")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-/]*$")


class ModelError(Exception):
    """Base class of everything that goes wrong building or testing models."""


class ModelConfigError(ModelError):
    """A setting, a path or the layout of `sql/` is wrong; nothing was built."""


class ModelCycleError(ModelConfigError):
    """Models reference each other in a circle, so no order can build them."""


class ModelBuildError(ModelError):
    """A model's SQL failed; the build was rolled back as a whole."""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    sql: str
    depends_on: frozenset[str] = frozenset()

    @property
    def relation(self) -> str:
        return f"{self.layer}.{self.name}"


@dataclass
class TestFailure:
    """A data test that found offending rows, or that could not run at all."""

    __test__ = False  # not a pytest class, whatever its name says

    model: str
    rule: str
    test: str
    count_rows: int = 0
    sample_rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def __str__(self) -> str:
        if self.error:
            return f"{self.model}: {self.rule} (could not run: {self.error})"
        noun = "row" if self.count_rows == 1 else "rows"
        return f"{self.model}: {self.rule} ({self.count_rows} offending {noun})"


class Connection(Protocol):
    def execute(self, sql: str, /) -> Any: ...


class _Database:
    """The little the runner asks of a connection: run a statement, read rows.

    Anything with a DB-API style `execute` returning a cursor (or itself, as
    DuckDB does) with `description` and `fetchall` will do.
    """

    def __init__(self, con: Connection) -> None:
        self._con = con

    def run(self, sql: str) -> None:
        self._con.execute(sql)

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        cursor = self._con.execute(sql)
        columns = [column[0] for column in cursor.description or ()]
        return columns, cursor.fetchall()

    def columns_of(self, schema: str, table: str) -> set[str]:
        _, rows = self.query(
            "select column_name from information_schema.columns "
            f"where table_schema = '{schema}' and table_name = '{table}'"
        )
        return {row[0] for row in rows}


# --- settings -------------------------------------------------------------


def default_warehouse() -> Path:
    """The warehouse `efw sync` writes: `[efw] warehouse` (EFW__WAREHOUSE)."""
    from pipelines.elasticfunnels.exceptions import ConfigurationError
    from pipelines.sync import resolve_paths

    try:
        return resolve_paths().warehouse
    except ConfigurationError as exc:
        raise ModelConfigError(str(exc)) from None


def business_timezone(flag: str | None = None) -> str:
    """The business time zone, checked: `flag` (`--timezone`) if given, else
    `[efw] business_timezone`; an error names whichever it came from."""
    try:
        return check_timezone(flag or default_business_timezone())
    except ModelConfigError as exc:
        where = (
            "--timezone"
            if flag
            else "`business_timezone` under [efw] (EFW__BUSINESS_TIMEZONE)"
        )
        raise ModelConfigError(f"{exc}; fix {where}") from None


def default_business_timezone() -> str:
    """`[efw] business_timezone` (EFW__BUSINESS_TIMEZONE), else UTC."""
    import dlt

    return dlt.config.get("efw.business_timezone") or "UTC"


def published_path(warehouse: Path) -> Path:
    """`efw.duckdb` is published as `efw.published.duckdb` beside it."""
    warehouse = Path(warehouse)
    return warehouse.with_name(f"{warehouse.stem}.published{warehouse.suffix}")


def check_timezone(name: str) -> str:
    """Return `name` if it is an IANA time zone name, else raise.

    The name ends up inside SQL, so it must also look like one: letters,
    digits and `_+-/` only.
    """
    if not isinstance(name, str) or not _TIMEZONE.match(name):
        raise ModelConfigError(
            f"business time zone `{name}` is not a time zone name; "
            "use an IANA name such as `UTC` or `America/New_York`"
        )
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ModelConfigError(
            f"business time zone `{name}` is unknown; "
            "use an IANA name such as `UTC` or `America/New_York`"
        ) from exc
    return name


def render(sql: str, variables: dict[str, str], path: Path) -> str:
    """Fill the `{{ name }}` placeholders of a model; unknown names fail."""

    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ModelConfigError(
                f"{path.name} uses `{{{{ {name} }}}}`, which is not a model "
                f"setting (known: {known})"
            )
        return variables[name]

    return _PLACEHOLDER.sub(fill, sql)


# --- discovery and order --------------------------------------------------


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def _read_statement(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip().rstrip(";").rstrip()


def discover_models(sql_dir: Path | None = None) -> list[Model]:
    """Every model file of the layers, with the models each one references."""
    sql_dir = Path(sql_dir or SQL_DIR)
    if not sql_dir.is_dir():
        raise ModelConfigError(f"no SQL models folder at {sql_dir}")

    found: dict[str, tuple[str, Path, str]] = {}
    for layer in LAYERS:
        for path in sorted((sql_dir / layer).glob("*.sql")):
            name = path.stem
            if not _NAME.match(name):
                raise ModelConfigError(
                    f"{path.name}: a model name takes lowercase letters, digits "
                    "and underscores only"
                )
            if name in found:
                raise ModelConfigError(
                    f"model `{name}` is defined twice: in {found[name][0]}/ "
                    f"and in {layer}/"
                )
            found[name] = (layer, path, _read_statement(path))

    models = []
    for name, (layer, path, sql) in found.items():
        depends_on = set()
        for schema, ref in _REFERENCE.findall(_strip_comments(sql).lower()):
            if layer == "marts" and schema == RAW_SCHEMA:
                raise ModelConfigError(
                    f"{path.name} reads the raw table `{schema}.{ref}`: marts "
                    "build on staging views only"
                )
            if layer == "staging" and schema == "marts":
                raise ModelConfigError(
                    f"{path.name} reads `marts.{ref}`: staging views read raw "
                    "tables only"
                )
            if schema == RAW_SCHEMA:
                continue
            if ref not in found or found[ref][0] != schema:
                raise ModelConfigError(
                    f"{path.name} reads `{schema}.{ref}`, and there is no "
                    f"{schema}/{ref}.sql"
                )
            if ref != name:
                depends_on.add(ref)
            else:
                raise ModelCycleError(f"model `{name}` reads itself")
        models.append(Model(name, layer, path, sql, frozenset(depends_on)))
    return models


def order_models(models: list[Model]) -> list[Model]:
    """The models in an order where each comes after all it reads.

    Staging first, then by name, wherever the references leave a choice, so
    the order is the same on every run.
    """
    by_name = {model.name: model for model in models}
    waiting = {model.name: set(model.depends_on) for model in models}
    rank = {layer: index for index, layer in enumerate(LAYERS)}

    def key(name: str) -> tuple[int, str]:
        return rank[by_name[name].layer], name

    ordered: list[Model] = []
    while waiting:
        ready = sorted((n for n, deps in waiting.items() if not deps), key=key)
        if not ready:
            raise ModelCycleError(
                "models read each other in a circle: " + _find_cycle(waiting)
            )
        name = ready[0]
        ordered.append(by_name[name])
        del waiting[name]
        for deps in waiting.values():
            deps.discard(name)
    return ordered


def _find_cycle(waiting: dict[str, set[str]]) -> str:
    # Every model left waits on another one left, so walking any path of
    # references must come back to a model already on it.
    path = [sorted(waiting)[0]]
    while True:
        step = sorted(waiting[path[-1]])[0]
        if step in path:
            cycle = path[path.index(step) :] + [step]
            return " -> ".join(cycle)
        path.append(step)


# --- building -------------------------------------------------------------


def ensure_raw_tables(con: Connection) -> list[str]:
    """Create the raw tables and columns the staging views read, if missing.

    Returns what was created, as `table` or `table.column`.
    """
    db = _Database(con)
    created = []
    db.run(f"create schema if not exists {RAW_SCHEMA}")
    for table, columns in RAW_TABLES.items():
        existing = db.columns_of(RAW_SCHEMA, table)
        if not existing:
            spec = ", ".join(f'"{name}" {kind}' for name, kind in columns.items())
            db.run(f"create table {RAW_SCHEMA}.{table} ({spec})")
            created.append(table)
            continue
        for name, kind in columns.items():
            if name not in existing:
                db.run(f'alter table {RAW_SCHEMA}.{table} add column "{name}" {kind}')
                created.append(f"{table}.{name}")
    if created:
        logger.info("created empty raw tables and columns: %s", ", ".join(created))
    return created


def build_models(
    con: Connection,
    *,
    business_timezone: str = "UTC",
    sql_dir: Path | None = None,
) -> list[str]:
    """Build every staging view and mart; return their names in build order.

    The build is one transaction: if any model fails, none of the build is
    kept and the warehouse holds the models of the last good build.
    """
    timezone = check_timezone(business_timezone)
    models = order_models(discover_models(sql_dir))
    db = _Database(con)

    try:
        db.query(f"select timezone('{timezone}', timestamptz '2000-01-01 00:00+00')")
    except Exception as exc:
        raise ModelConfigError(
            f"the database does not know the time zone `{timezone}`: {exc}"
        ) from exc

    started = time.perf_counter()
    built = []
    db.run("begin transaction")
    try:
        ensure_raw_tables(con)
        for layer in LAYERS:
            db.run(f"create schema if not exists {layer}")

        for model in models:
            sql = render(model.sql, {"business_timezone": timezone}, model.path)
            kind = LAYERS[model.layer]
            step = time.perf_counter()
            try:
                db.run(f"create or replace {kind} {model.relation} as\n{sql}")
            except Exception as exc:
                if _interrupted(exc):
                    # Ctrl-C inside the query: DuckDB reports it as an error.
                    raise KeyboardInterrupt from exc
                raise ModelBuildError(
                    f"model `{model.relation}` ({model.layer}/{model.path.name}) "
                    f"failed to build, so nothing was kept: {exc}"
                ) from exc
            logger.info(
                "built %s %s in %.2f s",
                kind,
                model.relation,
                time.perf_counter() - step,
            )
            built.append(model.relation)

        db.run("commit")
    except BaseException:
        try:
            db.run("rollback")
        except Exception:  # the failure may have ended the transaction already
            logger.debug("rollback after a failed build failed too", exc_info=True)
        raise

    logger.info(
        "built %d models in %.2f s (business time zone %s)",
        len(built),
        time.perf_counter() - started,
        timezone,
    )
    return built


def _interrupted(exc: Exception) -> bool:
    """A query stopped by Ctrl-C, as DuckDB's driver reports one: a plain
    `RuntimeError` for a SIGINT (duckdb 2.0), `InterruptException` for an
    interrupt asked for through the connection."""
    import duckdb

    return isinstance(exc, duckdb.InterruptException) or (
        type(exc) is RuntimeError and str(exc) == "Query interrupted"
    )


# --- data tests -----------------------------------------------------------


def _describe_test(path: Path, sql: str) -> tuple[str, str]:
    """The model and rule a test names in its header, else in its file name."""
    header = dict(re.findall(r"^--\s*(model|rule):\s*(.+?)\s*$", sql, re.M))
    stem_model, _, stem_rule = path.stem.partition("__")
    model = header.get("model") or stem_model
    rule = header.get("rule") or stem_rule.replace("_", " ") or path.stem
    return model, rule


def run_data_tests(
    con: Connection, *, sql_dir: Path | None = None
) -> list[TestFailure]:
    """Run every `sql/tests/*.sql`; return the failures, empty when all pass.

    A test is a query returning the rows that break its rule, so a passing
    test returns nothing.
    """
    tests_dir = Path(sql_dir or SQL_DIR) / "tests"
    db = _Database(con)
    failures = []

    for path in sorted(tests_dir.glob("*.sql")):
        raw_sql = _read_statement(path)
        model, rule = _describe_test(path, raw_sql)
        sql = render(raw_sql, {}, path)
        try:
            columns, rows = db.query(
                f"select * from (\n{sql}\n) as failing limit {SAMPLE_ROWS}"
            )
            count = 0
            if rows:
                _, counted = db.query(f"select count(*) from (\n{sql}\n) as failing")
                count = counted[0][0]
        except Exception as exc:
            failures.append(TestFailure(model, rule, path.name, error=str(exc)))
            logger.info("data test %s could not run", path.name)
            continue

        if rows:
            sample = [dict(zip(columns, row, strict=True)) for row in rows]
            failures.append(TestFailure(model, rule, path.name, count, sample))
            logger.info("data test %s failed: %d rows", path.name, count)
        else:
            logger.debug("data test %s passed", path.name)
    return failures


# --- publishing and exporting ---------------------------------------------


def _missing_warehouse(warehouse: Path) -> str:
    return (
        f"no warehouse at {warehouse}: run `efw sync` (or `efw demo` for the "
        "CDNOW demo) to create it, or point --warehouse at one"
    )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_copy(warehouse: Path) -> Path:
    """Copy the warehouse to `<name>.published.duckdb`, atomically replaced.

    DuckDB lets one process write a file and locks every other one out, even
    readers, so BI tools read this copy instead: holding it open never blocks
    a sync. The copy is written beside the target and renamed over it, so a
    reader sees the old copy or the new one, never half of one; a reader
    that has the old copy open keeps reading it until it reconnects.
    """
    import duckdb

    warehouse = Path(warehouse)
    if not warehouse.is_file():
        raise ModelConfigError(_missing_warehouse(warehouse))
    published = published_path(warehouse)

    # Holding a connection holds the write lock: no sync can change the file
    # between the checkpoint and the end of the copy.
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("checkpoint")
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{published.name}.", suffix=".tmp", dir=published.parent
        )
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as target, warehouse.open("rb") as source:
                shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
                os.fsync(target.fileno())
            shutil.copymode(warehouse, temp)

            # A write-ahead log left by someone who opened the copy for
            # writing would be replayed onto the new copy: drop it first.
            published.with_name(published.name + ".wal").unlink(missing_ok=True)
            os.replace(temp, published)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    finally:
        con.close()

    _fsync_dir(published.parent)
    logger.info("published %s", published)
    return published


def export_marts(warehouse: Path, out_dir: Path, fmt: str) -> list[Path]:
    """Write each mart to `<out_dir>/<mart>.<fmt>`; return the files written.

    Reads the warehouse read-only. Timestamps are written in UTC.
    """
    import duckdb

    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ModelConfigError(
            f"export format `{fmt}` is not one of {', '.join(EXPORT_FORMATS)}"
        )
    warehouse = Path(warehouse)
    if not warehouse.is_file():
        raise ModelConfigError(_missing_warehouse(warehouse))
    out_dir = Path(out_dir)

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("set TimeZone = 'UTC'")
        marts = [
            row[0]
            for row in con.execute(
                "select table_name from information_schema.tables "
                "where table_schema = 'marts' and table_type = 'BASE TABLE' "
                "order by table_name"
            ).fetchall()
            if _NAME.match(row[0])
        ]
        if not marts:
            raise ModelConfigError(f"no marts in {warehouse}: run `efw models` first")

        _writable_out_dir(out_dir)
        options = "format parquet" if fmt == "parquet" else "format csv, header"
        written = []
        for mart in marts:
            target = out_dir / f"{mart}.{fmt}"
            temp = out_dir / f".{mart}.{fmt}.tmp"
            literal = str(temp).replace("'", "''")
            try:
                con.execute(
                    f"copy (select * from marts.{mart}) to '{literal}' ({options})"
                )
                os.replace(temp, target)
            except (duckdb.IOException, OSError) as exc:
                # /proc and the like pass the folder check but take no file.
                raise ModelConfigError(
                    f"cannot write {target} ({exc}); pass --out naming a folder "
                    "that can be written"
                ) from exc
            written.append(target)
            logger.info("exported marts.%s to %s", mart, target)
    finally:
        con.close()
    return written


def _writable_out_dir(out_dir: Path) -> None:
    from pipelines.elasticfunnels.exceptions import ConfigurationError
    from pipelines.sync import _writable_folder

    try:
        _writable_folder(out_dir, "Pass --out naming a folder that can be written.")
    except ConfigurationError as exc:
        raise ModelConfigError(str(exc)) from None


# --- command line ---------------------------------------------------------


def add_parsers(subparsers) -> None:
    """Register `efw models` and `efw export`."""
    models = subparsers.add_parser(
        "models",
        help="build the staging views and marts, then publish a read-only copy",
        description=(
            "Build the staging views and mart tables from the raw tables the "
            "sync loaded, optionally run the data tests, then publish a "
            "read-only copy for BI tools beside the warehouse. Exit codes: 0 "
            "ok, 1 a model or data test failed, 2 a setting or path is wrong."
        ),
    )
    models.add_argument(
        "--test", action="store_true", help="run the data tests after building"
    )
    models.add_argument(
        "--warehouse",
        type=Path,
        help="the DuckDB file (default: [efw] warehouse, EFW__WAREHOUSE)",
    )
    models.add_argument(
        "--timezone",
        help=(
            "business time zone that dates and months are read in "
            "(default: [efw] business_timezone, EFW__BUSINESS_TIMEZONE)"
        ),
    )
    models.set_defaults(handler=_models_command)

    export = subparsers.add_parser(
        "export",
        help="write every mart to parquet or csv files",
        description="Write every mart table to one file each, read-only.",
    )
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    export.add_argument(
        "--out",
        type=Path,
        default=Path("exports"),
        help="folder for the files (default: exports)",
    )
    export.add_argument(
        "--warehouse",
        type=Path,
        help="the DuckDB file (default: [efw] warehouse, EFW__WAREHOUSE)",
    )
    export.set_defaults(handler=_export_command)


def _error(command: str, message: object) -> None:
    print(f"efw {command}: {message}", file=sys.stderr)


def _warehouse_failure(
    command: str, what: str, exc: Exception, outcome: str, warehouse: Path
) -> int:
    """Reports a DuckDB error: exit 4 when another process holds the file, as
    `efw sync` does, so a scheduler tells a busy warehouse from a bad one."""
    from pipelines.sync import _lock_error, sync_running

    lock = _lock_error(exc, rerun=f"efw {command}", outcome=outcome)
    if lock is not None:
        if sync_running(warehouse):
            after = (
                "it rebuilds the models and publishes the copy itself"
                if command == "models"
                else "or export now from the published copy, --warehouse "
                f"{published_path(warehouse)}"
            )
            _error(
                command,
                f"An `efw sync` is writing {warehouse} now; rerun `efw {command}` "
                f"when it ends ({after}); {outcome}",
            )
        else:
            _error(command, lock)
        return lock.exit_code
    _error(command, f"{what}: {exc}")
    return 2


#: Columns whose values are a customer's personal data, never printed: the
#: output of `efw models --test` ends up in scheduler logs and mail.
PERSONAL = re.compile(r"email|name|phone|address|city|state|country|zip")


def _print_failures(failures: list[TestFailure]) -> None:
    for failure in failures:
        print(f"FAIL {failure}  [sql/tests/{failure.test}]")
        hidden = False
        for row in failure.sample_rows:
            shown = []
            for key, value in row.items():
                if value is not None and PERSONAL.search(key):
                    value, hidden = "(hidden)", True
                shown.append(f"{key}={value}")
            print("    " + ", ".join(shown))
        if failure.count_rows > len(failure.sample_rows):
            print(f"    ... and {failure.count_rows - len(failure.sample_rows)} more")
        if hidden:
            print(
                "    (personal data hidden; the test's query shows it: "
                f"efw query with the SQL of sql/tests/{failure.test})"
            )


def _models_command(args) -> int:
    import duckdb

    from pipelines.elasticfunnels.exceptions import ConfigurationError
    from pipelines.sync import memory_limit

    try:
        warehouse = args.warehouse or default_warehouse()
        timezone = business_timezone(args.timezone)
        if not warehouse.is_file():
            raise ModelConfigError(_missing_warehouse(warehouse))
        con = duckdb.connect(str(warehouse), config={"memory_limit": memory_limit()})
    except (ModelConfigError, ConfigurationError) as exc:
        _error("models", exc)
        return 2
    except duckdb.Error as exc:
        what = f"cannot open the warehouse {warehouse}"
        return _warehouse_failure("models", what, exc, "nothing was built.", warehouse)

    try:
        built = build_models(con, business_timezone=timezone)
        print(f"built {len(built)} models in {warehouse} ({timezone})")
        failures = run_data_tests(con) if args.test else []
    except ModelConfigError as exc:
        _error("models", exc)
        return 2
    except ModelError as exc:
        _error("models", exc)
        return 1
    finally:
        con.close()

    if failures:
        _print_failures(failures)
        print(f"{len(failures)} data tests failed; the published copy was kept")
        return 1
    if args.test:
        print("all data tests passed")

    try:
        published = publish_copy(warehouse)
    except ModelConfigError as exc:
        _error("models", exc)
        return 2
    except duckdb.Error as exc:
        return _warehouse_failure(
            "models",
            f"cannot publish {warehouse}",
            exc,
            "the models are built, but the published copy is the previous one.",
            warehouse,
        )
    print(f"published {published}")
    return 0


def _export_command(args) -> int:
    import duckdb

    try:
        warehouse = args.warehouse or default_warehouse()
        written = export_marts(warehouse, args.out, args.format)
    except ModelConfigError as exc:
        _error("export", exc)
        return 2
    except duckdb.Error as exc:
        what = f"cannot read the warehouse {warehouse}"
        return _warehouse_failure(
            "export", what, exc, "nothing was exported.", warehouse
        )
    for path in written:
        print(f"wrote {path}")
    return 0
