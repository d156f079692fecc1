"""One sync: lock the warehouse, finish what a crashed run left, extract,
normalize, load, then rebuild the models and publish a copy for BI tools.

Everything here goes through dlt's destination-neutral API (the pipeline, its
state, `sql_client`), so the same run can later load into another destination;
what is DuckDB's own (the file lock, its error text) is kept in a few lines.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dlt
import httpx
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime import signals
from dlt.destinations.exceptions import DestinationConnectionError
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines import dlt_defaults
from pipelines.elasticfunnels import (
    Known,
    NothingKnown,
    SyncRun,
    elasticfunnels,
    refuse_another_brand,
)
from pipelines.elasticfunnels import settings as source_settings
from pipelines.elasticfunnels.exceptions import (
    ConfigurationError,
    EfwError,
    PendingLoadFailed,
    WarehouseLocked,
)

logger = logging.getLogger("efw.sync")

PIPELINE_NAME = "efw"
DATASET_NAME = "elasticfunnels"
DEFAULT_WAREHOUSE = "warehouse/efw.duckdb"
# dlt writes DuckDB loads as SQL INSERT statements by default; a large first
# sync then costs a minute and gigabytes while DuckDB parses them. JSON lines
# load through DuckDB's reader in seconds, and other destinations take them too.
LOADER_FILE_FORMAT = "jsonl"
# Details fetched in one run from which normalize gets a process pool.
NORMALIZE_POOL_FROM = 5_000
CUSTOMER_COLUMNS = [name for name in source_settings.CUSTOMER_COLUMNS]
# DuckDB takes up to 80% of the machine's memory by default, and a first sync
# of a large brand grows its load step with the rows (1.6 KiB a customer).
# Capped, DuckDB spills to a folder beside the file instead, so a sync's peak
# stays near the same figure whatever the brand's size.
DEFAULT_MEMORY_LIMIT = "512MB"
WAREHOUSE_SETTING = (
    "Pass --warehouse PATH.duckdb or set `warehouse` under [efw] (EFW__WAREHOUSE)."
)


@dataclass
class Paths:
    """Where one warehouse and its working state live."""

    warehouse: Path
    pipelines_dir: Path

    @property
    def lock_file(self) -> Path:
        return lock_file_of(self.warehouse)


def lock_file_of(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".sync-lock")


def resolve_paths(warehouse: str | os.PathLike[str] | None = None) -> Paths:
    """The warehouse from the argument, `[efw] warehouse` or the default, and
    dlt's working folder beside it unless `[efw] pipelines_dir` says otherwise.

    dlt would otherwise keep its state under /var/dlt or the home folder,
    shared by every warehouse on the machine.
    """
    if warehouse is not None and not str(warehouse).strip():
        raise ConfigurationError(
            "The warehouse path is empty; give a file such as warehouse/efw.duckdb. "
            f"{WAREHOUSE_SETTING}"
        )
    configured = warehouse or dlt.config.get("efw.warehouse") or DEFAULT_WAREHOUSE
    path = Path(os.path.expanduser(str(configured))).resolve()
    if path.suffix != ".duckdb":
        raise ConfigurationError(
            f"The warehouse path `{path}` does not end in .duckdb. {WAREHOUSE_SETTING}"
        )
    if path.is_dir():
        raise ConfigurationError(
            f"The warehouse path `{path}` is a folder, not a DuckDB file. "
            f"{WAREHOUSE_SETTING}"
        )
    if "?" in str(path):
        # DuckDB reads what follows a `?` as options, not as the file name.
        raise ConfigurationError(
            f"The warehouse path `{path}` holds a `?`, which DuckDB cannot "
            f"open; choose a path without one. {WAREHOUSE_SETTING}"
        )
    if path.name.endswith(".published.duckdb"):
        raise ConfigurationError(
            f"`{path}` is the read-only copy efw publishes for BI tools after "
            "each sync; name the warehouse itself, without `.published`. "
            f"{WAREHOUSE_SETTING}"
        )
    if path.stem == DATASET_NAME:
        # DuckDB cannot tell a catalog from a schema of the same name.
        raise ConfigurationError(
            f"The warehouse file may not be named `{DATASET_NAME}.duckdb`, like "
            "its dataset; choose another name."
        )
    working = dlt.config.get("efw.pipelines_dir")
    if working:
        # One setting may serve many warehouses (an agency's brands): each
        # gets its own folder in it, or their states and pending data mix.
        digest = hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
        root = Path(os.path.expanduser(str(working))).resolve()
        pipelines_dir = root / f"{path.stem}-{digest}"
    else:
        pipelines_dir = default_pipelines_dir(path)
    return Paths(path, pipelines_dir)


def default_pipelines_dir(warehouse: Path) -> Path:
    return warehouse.parent / f".{warehouse.stem}.dlt"


MIN_MEMORY_BYTES = 64 * 1000**2
MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B|B)", re.IGNORECASE)


def memory_limit() -> str:
    """`[efw] memory_limit` (EFW__MEMORY_LIMIT), in DuckDB's units: "512MB"."""
    value = str(dlt.config.get("efw.memory_limit") or DEFAULT_MEMORY_LIMIT).strip()
    size = MEMORY_SIZE.fullmatch(value)
    if not size:
        raise ConfigurationError(
            f"`memory_limit` is {value!r}; DuckDB takes a size such as 512MB or "
            "2GB. Fix it under [efw] (EFW__MEMORY_LIMIT)."
        )
    unit = size[2].upper()
    base = 1024 if "I" in unit else 1000
    power = "BKMGT".index(unit[0])
    if float(value[: size.start(2)]) * base**power < MIN_MEMORY_BYTES:
        raise ConfigurationError(
            f"`memory_limit` is {value!r}; DuckDB needs at least 64MB to load "
            "and build the models. Fix it under [efw] (EFW__MEMORY_LIMIT)."
        )
    return value


def _writable_folder(folder: Path, setting: str) -> None:
    """Creates `folder` if need be; refuses one that cannot be written.

    Checked up front: dlt and DuckDB would fail on it later, with a traceback
    that names neither the folder nor the setting.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
        reason = "permission denied"
    except OSError as exc:
        writable, reason = False, _reason(exc)
    if not writable:
        raise ConfigurationError(
            f"The folder `{folder}` cannot be created or written ({reason}). {setting}"
        )


def _reason(exc: OSError) -> str:
    return (exc.strerror or type(exc).__name__).lower()


def make_pipeline(paths: Paths) -> dlt.Pipeline:
    dlt_defaults.install()
    _writable_folder(paths.warehouse.parent, WAREHOUSE_SETTING)
    setting = WAREHOUSE_SETTING
    if paths.pipelines_dir != default_pipelines_dir(paths.warehouse):
        setting = "Set `pipelines_dir` under [efw] (EFW__PIPELINES_DIR) elsewhere."
    _writable_folder(paths.pipelines_dir, setting)
    # The one DuckDB-specific part: the file and the memory cap. Another dlt
    # destination would take its credentials here instead.
    credentials = DuckDbCredentials(
        str(paths.warehouse), global_config={"memory_limit": memory_limit()}
    )
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=dlt.destinations.duckdb(credentials),
        dataset_name=DATASET_NAME,
        pipelines_dir=str(paths.pipelines_dir),
        progress=None,
    )


# The lock files this process holds, and its pid when it took them.
_HELD_LOCKS: list[int] = []
_holder_pid = 0


def _after_fork_in_child() -> None:
    """A process forked during a sync (dlt's normalize workers) drops its
    copy of the sync's lock and dies with the sync: killed with SIGKILL or by
    the OOM killer, the sync would otherwise leave them idle forever, holding
    the lock, and every later sync would find the warehouse locked."""
    if not _HELD_LOCKS:
        return
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd in _HELD_LOCKS:
        # Pointing the number elsewhere drops this process's reference to
        # the locked file; the parent's copy still holds the lock.
        os.dup2(devnull, fd)
    os.close(devnull)
    _HELD_LOCKS.clear()
    if die_with_parent(signal.SIGKILL) and os.getppid() != _holder_pid:
        os._exit(1)  # the sync died before this process could tell


PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Asks Linux to send `sig` to this process when its parent dies; False
    where that cannot be asked (other systems)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig) == 0
    except (OSError, AttributeError):
        return False


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def sync_lock(paths: Paths) -> Iterator[None]:
    """Holds an exclusive lock so two syncs never write one warehouse at once."""
    _writable_folder(paths.lock_file.parent, WAREHOUSE_SETTING)
    try:
        handle = open(paths.lock_file, "a+")
    except OSError as exc:
        # /proc and the like: the folder exists but takes no new file.
        raise ConfigurationError(
            f"The lock file `{paths.lock_file}` cannot be created "
            f"({_reason(exc)}). {WAREHOUSE_SETTING}"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WarehouseLocked(
                f"Another `efw sync` holds {paths.lock_file}; it writes the same "
                "warehouse. Wait for it to finish; this run changed nothing."
            ) from None
        global _holder_pid
        _holder_pid = os.getpid()
        _HELD_LOCKS.append(handle.fileno())
        try:
            yield
        finally:
            _HELD_LOCKS.remove(handle.fileno())
            fcntl.flock(handle, fcntl.LOCK_UN)


def sync_running(warehouse: Path) -> bool:
    """Whether an `efw sync` holds the lock of `warehouse` now."""
    try:
        handle = open(lock_file_of(warehouse))
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class WarehouseCustomers:
    """What the loaded `customers` and `details` tables hold, for the source's
    change detection, read through dlt's SQL client."""

    KEYS_A_BATCH = 10_000

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self._client_cm = pipeline.sql_client()
        self._client = self._client_cm.__enter__()
        self._customers = self._client.make_qualified_table_name("customers")
        details = self._client.make_qualified_table_name("details")
        # The first load may have listed customers but loaded no details (all
        # quarantined): no table, or one without the hash.
        if self._exists(f"select list_row_hash from {details} limit 1"):
            hash_column = "d.list_row_hash"
            join = f"left join {details} d on d.email_key = c.email_key"
        else:
            hash_column, join = "null", ""
        self._lookup_sql = (
            f"select c.email_key, c.row_hash, c.deleted_at is not null, "
            f"{hash_column} from {self._customers} c {join} "
            "where c.email_key in ({})"
        )
        if not self._exists(f"select 1 from {self._customers} limit 1"):
            self.close()
            raise LookupError("no customers table yet")

    def _exists(self, probe: str) -> bool:
        """Whether `probe` runs: the table and columns it names exist."""
        try:
            self._client.execute_sql(probe)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)

    def lookup(self, keys: list[str]) -> dict[str, Known]:
        if not keys:
            return {}
        sql = self._lookup_sql.format(", ".join(["%s"] * len(keys)))
        rows = self._client.execute_sql(sql, *keys) or []
        return {
            key: Known(row_hash, details_hash, deleted)
            for key, row_hash, deleted, details_hash in rows
        }

    def active_keys(self) -> Iterator[list[str]]:
        # One query a batch, each after the last key of the one before: the
        # caller queries this connection between batches, which would end an
        # open cursor's result early (DuckDB does), and only a batch of keys
        # is held at a time.
        sql = (
            f"select email_key from {self._customers} where deleted_at is null "
            "and email_key > %s order by email_key limit %s"
        )
        after = ""
        while rows := self._client.execute_sql(sql, after, self.KEYS_A_BATCH):
            yield [row[0] for row in rows]
            after = rows[-1][0]

    def rows(self, keys: list[str]) -> list[dict[str, Any]]:
        columns = ", ".join(CUSTOMER_COLUMNS)
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            sql = (
                f"select {columns} from {self._customers} "
                f"where email_key in ({', '.join(['%s'] * len(chunk))})"
            )
            for values in self._client.execute_sql(sql, *chunk) or []:
                found.append(dict(zip(CUSTOMER_COLUMNS, values, strict=True)))
        return found


@dataclass
class SyncResult:
    run: SyncRun
    load_info: LoadInfo | None
    requests: int
    retries: int
    seconds: float
    warehouse: Path
    resumed_packages: int = 0
    models: list[str] = field(default_factory=list)
    published: Path | None = None


def run_sync(
    *,
    full: bool = False,
    warehouse: str | os.PathLike[str] | None = None,
    transport: httpx.BaseTransport | None = None,
    now: datetime | None = None,
    build: bool = True,
    on_progress: Any = None,
    hooks: dict[str, Any] | None = None,
    **source_args: Any,
) -> SyncResult:
    """Runs one sync. `source_args` override configuration (base_url, brand,
    access_key, lookback_days, ...); `transport` serves tests in-process;
    `now` pins the run's clock (tests that replay 1997 night by night)."""
    hooks = hooks or {}
    dlt_defaults.install()
    check_setting_names()
    _check_workers()
    _quiet_http_logs()
    paths = resolve_paths(warehouse)
    timezone_name = _business_timezone() if build else None
    started = time.monotonic()
    with sync_lock(paths):
        pipeline = make_pipeline(paths)
        try:
            # Before kept data of one brand is loaded for a run of another:
            # the working folder's state, and the warehouse's own.
            wanted = source_args.get("brand") or dlt.config.get(
                f"sources.{DATASET_NAME}.brand"
            )
            recorded = pipeline.state.get("sources", {}).get(DATASET_NAME, {})
            refuse_another_brand(
                recorded.get("brand"),
                wanted,
                f" (dlt's working folder {paths.pipelines_dir} for it)",
            )
            if pipeline.has_pending_data:
                refuse_another_brand(recorded_state(pipeline).get("brand"), wanted)
            resumed = _finish_pending(pipeline)
            _drop_unfinished_extracts(pipeline)
            _call(hooks, "after_pending")
            run = SyncRun(started_at=now or datetime.now(UTC))
            run.on_progress = on_progress
            known = _known_customers(pipeline)
            try:
                source = elasticfunnels(
                    full=full, known=known, run=run, transport=transport, **source_args
                )
                pipeline.extract(source, loader_file_format=LOADER_FILE_FORMAT)
            finally:
                run.close()
                if isinstance(known, WarehouseCustomers):
                    known.close()
            _call(hooks, "after_extract")
            load_info = normalize_and_load(
                pipeline,
                normalize_workers(run),
                after_normalize=lambda: _call(hooks, "after_normalize"),
            )
            _call(hooks, "after_load")
        except Exception as exc:
            failure = translate(exc, paths)
            if failure is exc:
                raise
            raise failure from None

        result = SyncResult(
            run=run,
            load_info=load_info,
            requests=run.http.requests if run.http else 0,
            retries=run.http.retries if run.http else 0,
            seconds=time.monotonic() - started,
            warehouse=paths.warehouse,
            resumed_packages=resumed,
        )
        if timezone_name is not None:
            try:
                build_and_publish(pipeline, paths, result, timezone_name)
            except Exception as exc:
                failure = translate(exc, paths, loaded=True)
                if failure is exc:
                    raise
                raise failure from None
        result.seconds = time.monotonic() - started
        return result


#: What `[efw]` holds; `[sources.elasticfunnels]` holds the source's settings.
EFW_SETTINGS = ("warehouse", "pipelines_dir", "business_timezone", "memory_limit")
_NOT_SETTINGS = {"full", "known", "run", "transport", "demo"}


def check_setting_names() -> None:
    """A misspelt setting would be ignored without a word (`warehose` under
    [efw] would start a second warehouse at the default path): every name
    under [efw] and [sources.elasticfunnels], in the settings files and the
    environment, must be one efw reads."""
    import difflib
    import inspect
    import tomllib

    source = [
        name
        for name in inspect.signature(elasticfunnels).parameters
        if name not in _NOT_SETTINGS
    ]
    sections = {"efw": list(EFW_SETTINGS), "sources.elasticfunnels": source}
    found: list[tuple[str, str, str]] = []  # (section, name, where)
    settings_dir = Path(dlt.current.run_context().settings_dir)
    for file_name in ("config.toml", "secrets.toml"):
        try:
            doc = tomllib.loads((settings_dir / file_name).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue  # absent; or dlt reports what is wrong with it
        for top in doc:
            # A misspelt section is as silent as a misspelt name.
            near = difflib.get_close_matches(top.lower(), ["efw", "sources"], n=1)
            if near and top != near[0]:
                raise ConfigurationError(
                    f"[{top}] in .dlt/{file_name} is not a section efw reads; "
                    f"did you mean [{near[0]}]?"
                )
        for section in sections:
            table: Any = doc
            for part in section.split("."):
                table = table.get(part) if isinstance(table, dict) else None
            if isinstance(table, dict):
                found += [
                    (section, name, f".dlt/{file_name}")
                    for name, value in table.items()
                    if not isinstance(value, dict)
                ]
    for variable in os.environ:
        for section, prefix in (
            ("efw", "EFW__"),
            ("sources.elasticfunnels", "SOURCES__ELASTICFUNNELS__"),
        ):
            rest = variable[len(prefix) :] if variable.startswith(prefix) else ""
            if rest and "__" not in rest:
                found.append((section, rest.lower(), f"the environment ({variable})"))
    for section, name, where in found:
        known = sections[section]
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else "."
        raise ConfigurationError(
            f"`{name}` under [{section}] in {where} is not a setting efw "
            f"reads{hint} The settings there are: {', '.join(known)}."
        )


def _check_workers() -> None:
    """`[normalize] workers` and `[extract] workers`, if set, are counts:
    checked before the first request, as dlt would fail only after the
    extract, or only on a night with details to fetch. dlt also reads them
    from sections named after the pipeline or the source."""
    for step, what in (
        ("normalize", "processes dlt normalizes with"),
        ("extract", "threads dlt runs the details transformer on"),
    ):
        for section in (
            step,
            f"{PIPELINE_NAME}.{step}",
            f"sources.{step}",
            f"sources.elasticfunnels.{step}",
        ):
            value = dlt.config.get(f"{section}.workers")
            if value is not None and not _is_count(value):
                variable = section.upper().replace(".", "__") + "__WORKERS"
                raise ConfigurationError(
                    f"`workers` under [{section}] is {value!r}; it is how many "
                    f"{what}, 1 or more. Fix it in .dlt/config.toml or {variable}, "
                    "or unset it."
                )


def _is_count(value: Any) -> bool:
    try:
        return int(str(value)) >= 1
    except ValueError:
        return False


def normalize_workers(run: SyncRun) -> int:
    """Processes for dlt's normalize: one for a night's few changes, where
    starting a pool would cost more than it saves; four for a first sync or
    a reconcile that fetched thousands of details, on any machine with more
    than one core. dlt hands each process a run of files sorted by table, so
    with two the heavy `details` files all go to one; with four they spread
    over two (CDNOW on 2 cores: 5.5 s alone, 5.8 s with two, 2.8 to 3.5 s
    with four). `[normalize] workers` in config.toml overrides it."""
    if run.details_fetched < NORMALIZE_POOL_FROM or (os.cpu_count() or 1) < 2:
        return 1
    return 4


def _quiet_http_logs() -> None:
    """httpx logs every request URL at INFO, and details URLs hold emails.

    Raised to WARNING unless the caller set a level on purpose.
    """
    for name in ("httpx", "httpcore"):
        http_logger = logging.getLogger(name)
        if http_logger.level == logging.NOTSET:
            http_logger.setLevel(logging.WARNING)


def _business_timezone() -> str:
    """`[efw] business_timezone`, checked before the first request: the
    models use it only once the data is loaded, too late to fail on it."""
    from pipelines import models

    try:
        return models.business_timezone()
    except models.ModelConfigError as exc:
        raise ConfigurationError(f"The {exc}.") from None


def build_and_publish(
    pipeline: dlt.Pipeline, paths: Paths, result: SyncResult, timezone_name: str
) -> None:
    """Rebuilds the SQL models and publishes a read-only copy of the warehouse."""
    from pipelines import models

    with pipeline.sql_client() as client:
        connection = client.native_connection
        result.models = models.build_models(connection, business_timezone=timezone_name)
    result.published = models.publish_copy(paths.warehouse)


def source_state_of(compressed: str) -> dict[str, Any]:
    """This source's part of a state dlt recorded in `_dlt_pipeline_state`."""
    from dlt.common.versioned_state import decompress_state

    return decompress_state(compressed).get("sources", {}).get(DATASET_NAME, {})


def recorded_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The source state the warehouse itself last recorded, {} if none."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name("_dlt_pipeline_state")
            rows = client.execute_sql(
                f"select state from {table} where pipeline_name = %s "
                "order by created_at desc limit 1",
                pipeline.pipeline_name,
            )
    except Exception:
        return {}  # no dataset or no state table yet
    return source_state_of(rows[0][0]) if rows else {}


def _drop_unfinished_extracts(pipeline: dlt.Pipeline) -> None:
    """Deletes what extracts stopped midway left (Ctrl-C, SIGTERM, a kill).

    dlt writes each extract in a folder of its own and moves it among the
    extracted packages when it completes; a stopped one stays there, with
    customers' emails and names, and no run ever reads it again. Under the
    sync's lock, no other extract can be writing one."""
    from dlt.common.storages import NormalizeStorage

    root = Path(pipeline.working_dir) / "normalize"
    if not root.is_dir():
        return
    stale = [
        folder
        for folder in root.iterdir()
        if folder.is_dir() and folder.name != NormalizeStorage.EXTRACTED_FOLDER
    ]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    if stale:
        logger.info("deleted %d unfinished extract(s) of stopped runs", len(stale))


def _finish_pending(pipeline: dlt.Pipeline) -> int:
    """Loads what a crashed or refused run extracted, before extracting anew.

    Its state travels in the same package, so loading it first keeps the
    cursor and the data in step.
    """
    if not pipeline.has_pending_data or pipeline.list_completed_load_packages():
        # Skipped for a first sync stopped after its extract: nothing is in
        # the warehouse yet, and dlt would take the missing dataset for a
        # dropped one and wipe the working folder, the package with it.
        pipeline.sync_destination()
    if not pipeline.has_pending_data:
        return 0
    logger.info("loading what an earlier run left behind")
    try:
        info = normalize_and_load(pipeline)
    except PipelineStepFailed as exc:
        if _interrupted(exc) or _lock_error(exc) is not None:
            raise
        # Left as it is, the package fails every later run the same way.
        job_id = getattr(exc.exception, "job_id", None) or ""
        table = f" of table `{job_id.split('.')[0]}`" if job_id else ""
        raise PendingLoadFailed(
            f"Data an earlier run extracted (load {exc.load_id}) cannot be "
            f"loaded: a {exc.step} job{table} failed; `dlt pipeline "
            f"--pipelines-dir {pipeline.pipelines_dir} {pipeline.pipeline_name} "
            "failed-jobs` shows why. Every sync loads it first, so none can run "
            "until it is dealt with. Fix the cause and rerun `efw sync`, or "
            "drop it with `dlt pipeline --pipelines-dir "
            f"{pipeline.pipelines_dir} {pipeline.pipeline_name} abort-packages`; "
            "the next `efw sync` then fetches again whatever of it did not load."
        ) from None
    _drop_repeated_rows(pipeline)
    return len(info.loads_ids)


def _drop_repeated_rows(pipeline: dlt.Pipeline) -> None:
    """Removes rows a resumed load wrote twice.

    A load job killed after its rows were written but before dlt recorded it
    as done runs again when the package resumes. Append tables then hold its
    rows twice, and so does the root table of a merge (dlt deduplicates
    nested rows only). dlt gives every row a unique `_dlt_id`, so a repeated
    one can only be such a rerun; one copy stays.
    """
    with pipeline.sql_client() as client:
        for table in pipeline.default_schema.data_table_names(seen_data_only=True):
            name = client.make_qualified_table_name(table)
            [(repeats,)] = client.execute_sql(
                f"select count(*) - count(distinct _dlt_id) from {name}"
            )
            if not repeats:
                continue
            logger.warning(
                "removing %d rows of %s that a resumed load wrote twice", repeats, table
            )
            # `rowid` is DuckDB's: the one way to tell two identical rows apart.
            client.execute_sql(
                f"delete from {name} where rowid in (select rowid from ("
                "select rowid, row_number() over (partition by _dlt_id "
                f"order by rowid) as copy from {name}) where copy > 1)"
            )


def _known_customers(pipeline: dlt.Pipeline) -> Any:
    try:
        return WarehouseCustomers(pipeline)
    except Exception as exc:
        lock = _lock_error(exc)
        if lock is not None:
            raise lock from None
        # A new warehouse has no schema and no tables yet.
        logger.debug("no customers loaded yet (%s)", type(exc).__name__)
        return NothingKnown()


def _call(hooks: dict[str, Any], name: str) -> None:
    hook = hooks.get(name)
    if hook is not None:
        hook()


LOCK_PATTERN = re.compile(r"Could not set lock on file|Conflicting lock is held", re.I)


def _lock_error(
    exc: BaseException,
    loaded: bool = False,
    *,
    rerun: str = "efw sync",
    outcome: str | None = None,
) -> WarehouseLocked | None:
    """The lock error behind `exc`, if any; `loaded` when the data is in.

    `rerun` and `outcome` let the other commands that open the file (`efw
    models`, `efw export`) say what to rerun and what the failure left.
    """
    for error in _chain(exc):
        if LOCK_PATTERN.search(str(error)):
            holder = re.search(r"\(PID (\d+)\)", str(error))
            who = f" (process {holder.group(1)})" if holder else ""
            if outcome is None:
                outcome = (
                    "this run's data is loaded, but the models were not rebuilt "
                    "and the published copy is the previous one."
                    if loaded
                    else "anything this run extracted is kept and loads first "
                    "next time."
                )
            return WarehouseLocked(
                "The warehouse file is locked by another process"
                f"{who}: DuckDB allows one writer and no other reader while it "
                "writes. Close the program holding it (point BI tools at the "
                f"published copy instead) and rerun `{rerun}`; {outcome}"
            )
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        for nxt in (
            error.__cause__,
            error.__context__,
            getattr(error, "exception", None),
        ):
            if isinstance(nxt, BaseException):
                stack.append(nxt)


# What `efw` reports on its own terms when dlt wraps it (see `guarded`).
_REPORTED = (
    EfwError,
    ConfigFieldMissingException,
    ConfigValueCannotBeCoercedException,
)


def normalize_and_load(
    pipeline: dlt.Pipeline,
    workers: int = 1,
    after_normalize: Any = None,
) -> LoadInfo:
    """dlt's normalize and load, with SIGINT and SIGTERM held across both and
    acted on after each.

    dlt holds them inside each step too, but acts on one only at its own
    safe points and forgets one that arrived after the last of them when
    the step ends: the sync would then finish with exit 0 after `systemctl
    stop`. Held here, dlt's own holding nests inside and forgets nothing.
    """
    with signals.intercepted_signals():
        pipeline.normalize(workers=workers)
        signals.raise_if_signalled()
        if after_normalize is not None:
            after_normalize()
        info = pipeline.load()
        signals.raise_if_signalled()
    return info


def translate(
    exc: BaseException, paths: Paths | None = None, loaded: bool = False
) -> BaseException:
    """What a failed sync reports: a Ctrl-C, a lock error, an efw or dlt
    configuration error inside dlt's wrapper, a warehouse DuckDB cannot open,
    a model that failed; else `exc` itself."""
    from pipelines.models import ModelConfigError, ModelError

    if _interrupted(exc):
        return KeyboardInterrupt()
    lock = _lock_error(exc, loaded)
    if lock is not None:
        return lock
    for error in _chain(exc):
        if isinstance(error, _REPORTED):
            return error
        if isinstance(error, DestinationConnectionError) and paths is not None:
            return ConfigurationError(
                f"DuckDB cannot open the warehouse `{paths.warehouse}` "
                f"({error.inner_exc}). {WAREHOUSE_SETTING}"
            )
        if loaded and isinstance(error, ModelError):
            config = isinstance(error, ModelConfigError)
            return (ConfigurationError if config else EfwError)(
                f"{error}. This run's data is loaded; fix that and run `efw models`."
            )
    return exc


def _interrupted(exc: BaseException) -> bool:
    """A Ctrl-C behind `exc`: dlt wraps one, or hides it behind "generator
    already executing" when its cleanup closes a generator a worker thread is
    still running."""
    return any(isinstance(error, KeyboardInterrupt) for error in _chain(exc))
