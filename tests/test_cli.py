"""The `efw` entry point itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pipelines.cli as cli
from tests.drilling import held_open


def test_ctrl_c_before_a_command_starts_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["query", "select 1"]) == 130
    assert capsys.readouterr().err == "efw: interrupted\n"


PRINTS_A_LOT = """
import argparse, sys
import pipelines.cli as cli

def build_parser():
    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=lambda args: [print(n) for n in range(10**6)])
    return parser

cli.build_parser = build_parser
sys.exit(cli.main([]))
"""


def test_a_reader_that_leaves_early_gets_no_traceback():
    child = subprocess.Popen(
        [sys.executable, "-c", PRINTS_A_LOT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout.readline() == b"0\n"
    child.stdout.close()  # as `| head -1` does
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141
    assert err == ""


def _demo(warehouse: Path) -> int:
    return cli.main(["demo", "--warehouse", str(warehouse)])


def _a_demo_warehouse(warehouse: Path) -> None:
    """What an earlier `efw demo` leaves: a warehouse its sync made."""
    from pipelines.emulator import Emulator
    from tests.syncing import sync

    sync(Emulator.cdnow(max_customers=50), warehouse, build=True, demo=True)


def test_the_demo_replaces_only_its_own_files(tmp_path):
    from pipelines.commands import _remove_demo
    from pipelines.models import published_path
    from pipelines.sync import default_pipelines_dir

    warehouse = tmp_path / "[w].duckdb"
    _a_demo_warehouse(warehouse)
    # Files beside it whose names merely start alike, or match as patterns:
    # the publish temp file of a warehouse named w.duckdb.
    (tmp_path / "[w]-notes.txt").write_text("mine")
    (tmp_path / "[w]_backup").mkdir()
    (tmp_path / "[w]_backup" / "old.duckdb").write_text("mine too")
    (tmp_path / ".w.published.duckdb.123.tmp").write_text("another's")
    working = default_pipelines_dir(warehouse)
    assert (working / "efw").is_dir() and published_path(warehouse).is_file()

    _remove_demo(warehouse, working)

    assert not warehouse.exists()
    assert not published_path(warehouse).exists()
    assert not (working / "efw").exists()
    assert (tmp_path / "[w]-notes.txt").read_text() == "mine"
    assert (tmp_path / "[w]_backup" / "old.duckdb").read_text() == "mine too"
    assert (tmp_path / ".w.published.duckdb.123.tmp").read_text() == "another's"


def test_the_demo_leaves_every_file_it_did_not_make(tmp_path, capsys):
    import duckdb

    from pipelines.models import published_path
    from tests.syncing import sync

    foreign = tmp_path / "sales.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("create table orders as select 1 as id")
    text = tmp_path / "notes.duckdb"
    text.write_text("not a database")
    # A warehouse `efw sync` made, of the demo's own brand.
    from pipelines.emulator import Emulator

    synced = tmp_path / "try" / "efw.duckdb"
    sync(Emulator.cdnow(max_customers=50), synced, build=True)
    # A published copy alone, the warehouse beside it gone.
    lone = tmp_path / "lone.duckdb"
    published_path(lone).write_text("someone's copy")

    for path in (foreign, text, synced, lone):
        assert _demo(path) == 2
        assert "was not made by `efw demo`" in capsys.readouterr().err
    with duckdb.connect(str(foreign), read_only=True) as con:
        assert con.sql("select count(*) from orders").fetchall() == [(1,)]
    assert text.read_text() == "not a database"
    assert synced.is_file() and published_path(synced).is_file()
    assert published_path(lone).read_text() == "someone's copy"


def test_the_demo_waits_for_a_program_holding_its_warehouse(tmp_path, capsys):
    warehouse = tmp_path / "warehouse.duckdb"
    _a_demo_warehouse(warehouse)
    with held_open(warehouse):
        assert _demo(warehouse) == 4
    assert "another program has" in capsys.readouterr().err
    assert warehouse.is_file()


def test_the_demo_waits_for_a_sync_writing_its_warehouse(tmp_path, capsys):
    from pipelines.sync import resolve_paths, sync_lock

    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(b"")
    with sync_lock(resolve_paths(warehouse)):
        assert _demo(warehouse) == 4
    assert "an `efw sync` is writing" in capsys.readouterr().err
    assert warehouse.exists()


def test_a_settings_file_that_does_not_parse_is_named(tmp_path):
    settings = tmp_path / ".dlt"
    settings.mkdir()
    (settings / "secrets.toml").write_text(
        '[sources.elasticfunnels]\naccess_key = S3cret-value"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(
        "efw: ./.dlt/secrets.toml is not valid TOML at line 2, column "
    )
    assert "Traceback" not in done.stderr
    # Not even the first character of the key.
    assert "'S'" not in done.stderr and "S3cret" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--port", "-1"], "--port: must be 0 to 65,535, not -1"),
        (["--port", "99999"], "--port: must be 0 to 65,535, not 99,999"),
        (["--max-customers", "-5"], "--max-customers: must be 1 to"),
        (["--customers", "many"], "--customers: not a whole number: 'many'"),
    ],
)
def test_emulator_flags_out_of_range_are_usage_errors(flags, said, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["emulator", "serve", *flags])
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err


def test_the_demo_refuses_an_empty_warehouse_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work.txt").write_text("mine")
    assert cli.main(["demo", "--warehouse", ""]) == 2
    assert "The warehouse path is empty" in capsys.readouterr().err
    assert (tmp_path / "work.txt").read_text() == "mine"


RUNS_AN_EMULATOR = """
import time
from pipelines.commands import emulator_process

emulator = emulator_process()
with emulator:
    print(emulator.process.pid, flush=True)
    time.sleep(600)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_demos_emulator_dies_with_the_demo():
    child = subprocess.Popen(
        [sys.executable, "-c", RUNS_AN_EMULATOR],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    emulator = int(child.stdout.readline())
    child.kill()  # as SIGKILL, or an OOM kill, ends a demo: no cleanup runs
    child.wait()

    def alive() -> bool:
        try:
            status = Path(f"/proc/{emulator}/status").read_text()
        except FileNotFoundError:
            return False
        return "\\nState:\\tZ" not in status

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive()


def test_a_sync_over_a_demos_warehouse_makes_it_not_the_demos(tmp_path, capsys):
    import duckdb

    from pipelines.commands import _made_by_the_demo
    from pipelines.emulator import Emulator
    from tests.syncing import sync

    # What the demo made, then synced by `efw sync`: no longer the demo's.
    warehouse = tmp_path / "d.duckdb"
    _a_demo_warehouse(warehouse)
    assert _made_by_the_demo(warehouse) is True
    sync(Emulator.cdnow(max_customers=50), warehouse, build=True)
    assert _made_by_the_demo(warehouse) is False

    assert _demo(warehouse) == 2
    assert "was not made by `efw demo`" in capsys.readouterr().err
    assert warehouse.is_file()
    # A DuckDB file without a table, as a demo stopped early leaves, holds
    # nothing to lose.
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert _made_by_the_demo(empty) is True


def test_the_demo_waits_for_a_reader_of_its_warehouse(tmp_path, capsys):
    warehouse = tmp_path / "warehouse.duckdb"
    _a_demo_warehouse(warehouse)
    with held_open(warehouse, read_only=True):
        assert _demo(warehouse) == 4
    assert "another program has" in capsys.readouterr().err
    assert warehouse.is_file()
