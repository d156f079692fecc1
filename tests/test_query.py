"""`efw query`: SQL on the published copy, printed, without the duckdb shell."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.cli import main
from pipelines.emulator import Emulator
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


def test_max_rows_below_one_is_a_usage_error(published, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["query", "select 1", "--max-rows", "-1", "--warehouse", str(published)])
    assert exit_info.value.code == 2
    assert "must be 1 or more, not -1" in capsys.readouterr().err


def test_no_published_copy_exits_2_saying_what_to_run(tmp_path, capsys):
    code = main(["query", "select 1", "--warehouse", str(tmp_path / "w.duckdb")])
    assert code == 2
    assert "run `efw sync`" in capsys.readouterr().err
