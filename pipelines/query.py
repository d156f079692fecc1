"""`efw query`: ad hoc SQL on the published copy, without the duckdb shell.

The DuckDB command-line shell is a separate download; the duckdb Python
package efw installs is not. This prints what the shell would, from the same
read-only copy BI tools use, so it never blocks a sync.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def add_parser(commands: argparse._SubParsersAction) -> None:
    query = commands.add_parser(
        "query",
        help="run one SQL statement on the published copy and print the rows",
        description=(
            "Run one SQL statement, read-only, on the published copy of the "
            "warehouse (<warehouse>.published.duckdb) and print its rows. "
            "Exit codes: 0 ok, 1 the statement failed, 2 no published copy."
        ),
    )
    query.add_argument(
        "sql", help='the statement, such as "select * from marts.cohort_ltv"'
    )
    query.add_argument(
        "--warehouse",
        type=Path,
        help="the warehouse whose copy to read (default: [efw] warehouse)",
    )
    query.add_argument(
        "--max-rows", type=_positive, default=40, help="rows to print at most (40)"
    )
    query.set_defaults(handler=query_command)


def query_command(args: argparse.Namespace) -> int:
    import duckdb

    from pipelines.elasticfunnels.exceptions import ConfigurationError
    from pipelines.models import published_path
    from pipelines.sync import resolve_paths

    try:
        warehouse = resolve_paths(args.warehouse).warehouse
    except ConfigurationError as exc:
        print(f"efw query: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    published = published_path(warehouse)
    if not published.is_file():
        print(
            f"efw query: there is no published copy at {published}; run "
            "`efw sync` (or `efw demo`) first, or pass --warehouse with the "
            "warehouse file that was synced.",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    with duckdb.connect(str(published), read_only=True) as con:
        try:
            # DuckDB plans the statement here and runs it only when the rows
            # are asked for: an error may come from either step.
            relation = con.sql(args.sql)
            if relation is not None:
                table = io.StringIO()
                with contextlib.redirect_stdout(table):
                    relation.show(max_rows=args.max_rows, max_width=160)
                rows = relation.shape[0]
        except duckdb.Error as exc:
            print(f"efw query: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if relation is not None:
        text = table.getvalue()
        sys.stdout.write(text)
        # DuckDB counts the rows below the table itself only when it leaves
        # rows or columns out.
        if "row" not in text.rpartition("┘")[2]:
            print(f"{rows:,} row{'' if rows == 1 else 's'}")
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value
