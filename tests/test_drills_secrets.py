"""Drill 10: the access key goes in the `EF-Access-Key` header and nowhere
else (not a log line, an error, dlt's trace or working files, the warehouse),
and no customer's email reaches a log line.

The key is set the way users set it, `SOURCES__ELASTICFUNNELS__ACCESS_KEY`,
so dlt resolves it and records the resolution in its trace. Failures report
where the key was found, never the key.
"""

from __future__ import annotations

import gzip
import json
import logging
import pickle
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from dlt.common.versioned_state import decompress_state

from pipelines import cli
from pipelines.elasticfunnels.client import quote_email
from pipelines.elasticfunnels.records import email_key
from pipelines.emulator import DEFAULT_BRAND, Emulator, Faults
from pipelines.models import published_path
from pipelines.sync import make_pipeline, resolve_paths, run_sync

pytestmark = pytest.mark.slow

KEY = "efw-drill-7c41e0b9d2a6f8"
WRONG_KEY = "efw-drill-wrong-3b9f2e71c0"
SECRETS = {"the access key": KEY, "a wrong access key": WRONG_KEY}


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator.cdnow(max_customers=300, key=KEY)


def assert_no_secret(text: str | bytes, where: str) -> None:
    """Fails naming `where` if a key is in `text`; never shows the key."""
    for what, secret in SECRETS.items():
        needle = secret.encode() if isinstance(text, bytes) else secret
        if needle in text:
            pytest.fail(f"{what} appears in {where}", pytrace=False)


class Collected(logging.Handler):
    """Takes every log record in place of pytest's handlers, so a record that
    holds the key is searched here and never shown in a failure report."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def collected_logs() -> Iterator[Collected]:
    """Every log record at DEBUG goes to a `Collected` only, for the block.

    Entered inside the test, after pytest has attached its own handlers
    for the call, which would show the records in a failure report.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    collected = Collected()
    root.handlers[:] = [collected]
    root.setLevel(logging.DEBUG)
    try:
        yield collected
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def file_texts(folder: Path):
    """Every file under `folder`, as bytes, gzip opened, pickles unpickled."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data
        if path.suffix == ".gz":
            yield path, gzip.decompress(data)
        if path.suffix == ".pickle":
            yield path, repr(pickle.loads(data)).encode()


def warehouse_texts(warehouse: Path):
    """Every text value in every table of every schema, dlt's own included,
    and the pipeline state dlt stores compressed."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name "
            "from information_schema.columns where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            values = con.execute(
                f'select "{column}" from "{schema}"."{table}" '
                f'where "{column}" is not null'
            ).fetchall()
            where = f"{warehouse.name}: {schema}.{table}.{column}"
            yield where, "\n".join(v for (v,) in values)
            if table == "_dlt_pipeline_state" and column == "state":
                for (state,) in values:
                    yield where, json.dumps(decompress_state(state))


def test_the_key_never_leaves_the_request_header(
    emulator, tmp_path, monkeypatch, capsys
):
    """Four `efw sync` runs at DEBUG, dlt's logging at DEBUG too: a first sync
    with the models built and the copy published, a reconcile over bad rows
    (quarantined with excerpts of the rows), an outage that fails the run,
    and a wrong key. Then everything they left is searched for the key."""
    warehouse = tmp_path / "w.duckdb"
    with collected_logs() as logs, emulator.serve() as base_url:
        for name, value in {
            "SOURCES__ELASTICFUNNELS__BASE_URL": base_url,
            "SOURCES__ELASTICFUNNELS__BRAND": DEFAULT_BRAND,
            "SOURCES__ELASTICFUNNELS__ACCESS_KEY": KEY,
            "SOURCES__ELASTICFUNNELS__RETRY_FLOOR_SECONDS": "0.05",
            "SOURCES__ELASTICFUNNELS__RETRY_BUDGET_SECONDS": "0.5",
            "EFW_LOG_LEVEL": "DEBUG",
            "RUNTIME__LOG_LEVEL": "DEBUG",
        }.items():
            monkeypatch.setenv(name, value)
        sync = ["sync", "--warehouse", str(warehouse)]

        assert cli.main(sync) == 0
        emulator.faults = Faults(bad_data=["money_string", "case_duplicate"])
        assert cli.main([*sync, "--full"]) == 0
        emulator.faults = Faults(rate_5xx=1.0, body_5xx="html")
        assert cli.main([*sync, "--no-models"]) == 3

        # The same failure as a library call: the exception and its chain.
        with pytest.raises(Exception) as failed:
            run_sync(warehouse=warehouse, build=False)
        emulator.faults = Faults()
        monkeypatch.setenv("SOURCES__ELASTICFUNNELS__ACCESS_KEY", WRONG_KEY)
        assert cli.main([*sync, "--no-models"]) == 2

    output = capsys.readouterr()
    assert_no_secret(output.out, "stdout")
    assert_no_secret(output.err, "stderr")
    assert "efw: The API answered 401" in output.err
    for record in logs.records:
        where = f"a {record.levelname} log record of {record.name}"
        assert_no_secret(record.getMessage(), where)
        assert_no_secret(repr(record.args), where)
        if record.exc_info:
            assert_no_secret(
                "".join(traceback.format_exception(*record.exc_info)), where
            )

    error = failed.value
    assert_no_secret(str(error), "the exception")
    assert_no_secret(repr(error), "the exception's repr")
    chain = "".join(traceback.format_exception(error))
    assert_no_secret(chain, "the exception's traceback and chain")
    assert "kept failing" in str(error)

    paths = resolve_paths(warehouse)
    trace = make_pipeline(paths).last_trace
    assert trace is not None and trace.steps
    resolved = [v.key for v in trace.resolved_config_values]
    assert "access_key" in resolved
    assert_no_secret(str(trace), "dlt's trace")
    assert_no_secret(repr(trace), "dlt's trace")
    assert_no_secret(repr(trace.asdict()), "dlt's trace")
    files = 0
    for path, data in file_texts(paths.pipelines_dir):
        assert_no_secret(data, f"{path.relative_to(tmp_path)}")
        files += 1
    # State, schemas, the trace, and what each loaded package keeps.
    assert files > 10

    for copy in (warehouse, published_path(warehouse)):
        assert_no_secret(copy.read_bytes(), copy.name)
        for where, text in warehouse_texts(copy):
            assert_no_secret(text, where)
    [(quarantined,)] = (
        duckdb.connect(str(warehouse), read_only=True)
        .execute("select count(*) from elasticfunnels.quarantine")
        .fetchall()
    )
    assert quarantined == 2


def test_no_email_in_a_log_line(emulator, tmp_path, monkeypatch, capsys):
    """At DEBUG, through the CLI, over bad rows, details that went missing
    and retries: no log line holds an email, as served, normalized or
    URL-encoded for a details path."""
    emails = emulator.store.emails()
    forms = {f for e in emails for f in (e, email_key(e), quote_email(e))}
    warehouse = tmp_path / "w.duckdb"
    with collected_logs() as logs, emulator.serve() as base_url:
        for name, value in {
            "SOURCES__ELASTICFUNNELS__BASE_URL": base_url,
            "SOURCES__ELASTICFUNNELS__BRAND": DEFAULT_BRAND,
            "SOURCES__ELASTICFUNNELS__ACCESS_KEY": KEY,
            "SOURCES__ELASTICFUNNELS__RETRY_FLOOR_SECONDS": "0.01",
            "EFW_LOG_LEVEL": "DEBUG",
            "RUNTIME__LOG_LEVEL": "DEBUG",
        }.items():
            monkeypatch.setenv(name, value)
        emulator.faults = Faults(
            bad_data=["money_string", "bad_date", "case_duplicate"],
            rate_5xx=0.05,
            rate_429=0.05,
            retry_after="0",
            seed=2,
        )
        assert cli.main(["sync", "--warehouse", str(warehouse), "--no-models"]) == 0
        emulator.faults = Faults()

    lines = capsys.readouterr().err.splitlines()
    lines += [r.getMessage() for r in logs.records]
    assert any("quarantined a customers row" in line for line in lines)
    assert any("retrying after" in line for line in lines)
    leaks = [line for line in lines if any(form in line for form in forms)]
    assert leaks == []
