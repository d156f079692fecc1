"""`efw query`: SQL on the published copy, printed, without the duckdb shell."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.cli import main
from pipelines.emulator import Emulator
from tests.drilling import held_open
from tests.syncing import query, sync


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    emulator = Emulator.cdnow(max_customers=300)
    emulator.set_clock(datetime(1997, 9, 1, tzinfo=UTC))
    warehouse = tmp_path_factory.mktemp("query") / "w.duckdb"
    result = sync(emulator, warehouse, build=True)
    assert result.published is not None
    return warehouse


def test_prints_the_rows_of_the_published_copy(published, capsys):
    [(size,)] = query(
        published, "select count(*) from marts.customer_ltv where not is_lead"
    )
    code = main(
        [
            "query",
            "select count(*) as buyers from marts.customer_ltv where not is_lead",
            "--warehouse",
            str(published),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "buyers" in out and f"{size}" in out


@pytest.mark.parametrize(
    ("sql", "counts"),
    [
        # All shown: efw counts them.
        ("select * from range(3)", ["3 rows"]),
        ("select 1 as one", ["1 row"]),
        # Too many rows or too many columns to show: DuckDB counts them.
        ("select * from range(50)", ["50 rows", "(40 shown)"]),
        (
            "select " + ", ".join(f"{i} as wide_column_{i}" for i in range(40)),
            ["1 row", "40 columns"],
        ),
    ],
)
def test_the_row_count_is_printed_once(published, capsys, sql, counts):
    assert main(["query", sql, "--warehouse", str(published)]) == 0
    out = capsys.readouterr().out
    for count in counts:
        assert out.count(count) == 1, out[-400:]
    assert out.count(" row") == 1


def test_a_bad_statement_exits_1_with_duckdbs_message(published, capsys):
    code = main(
        ["query", "select * from marts.no_such_mart", "--warehouse", str(published)]
    )
    assert code == 1
    assert "no_such_mart" in capsys.readouterr().err


def test_an_error_while_the_rows_are_read_exits_1_without_a_traceback(
    published, capsys
):
    code = main(
        ["query", "select cast('a' as int) as n", "--warehouse", str(published)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("efw query: ") and "Traceback" not in err


@pytest.mark.parametrize("rows", ["-1", "0", "99999999999999999999"])
def test_max_rows_out_of_range_is_a_usage_error(rows, published, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["query", "select 1", "--max-rows", rows, "--warehouse", str(published)])
    assert exit_info.value.code == 2
    assert f"must be 1 to 10,000, not {rows}" in capsys.readouterr().err


@pytest.mark.parametrize(("total", "limit"), [(5, 3), (41, 40), (3, 40)])
def test_max_rows_rows_are_printed(total, limit, published, capsys):
    sql = f"select range as n from range({total})"
    args = ["query", sql, "--max-rows", str(limit), "--warehouse", str(published)]
    assert main(args) == 0
    out = capsys.readouterr().out
    printed = [line for line in out.splitlines() if line.startswith("│")]
    # The header row and its type row, then one line a row shown.
    assert len(printed) == 2 + min(total, limit)
    shown = f" ({limit:,} shown)" if total > limit else ""
    assert out.splitlines()[-1] == f"{total:,} rows{shown}"


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("select 1; select 2", "give one SQL statement, not 2"),
        ("-- nothing", "give one SQL statement, not 0"),
        ("copy (select 1) to 'out.csv'", "Permission Error"),
        ("select * from read_csv('/etc/passwd')", "Permission Error"),
    ],
)
def test_one_statement_reading_only_the_copy(sql, said, published, capsys, tmp_path):
    assert main(["query", sql, "--warehouse", str(published)]) == 1
    assert said in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_a_copy_another_program_writes_exits_4(published, capsys):
    from pipelines.models import published_path

    with held_open(published_path(published)):
        assert main(["query", "select 1", "--warehouse", str(published)]) == 4
    assert "open for writing" in capsys.readouterr().err


def test_no_published_copy_exits_2_saying_what_to_run(tmp_path, capsys):
    code = main(["query", "select 1", "--warehouse", str(tmp_path / "w.duckdb")])
    assert code == 2
    assert "run `efw sync`" in capsys.readouterr().err
