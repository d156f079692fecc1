"""`efw query`: ad hoc SQL on the published copy, without the duckdb shell.

The DuckDB command-line shell is a separate download; the duckdb Python
package efw installs is not. This prints what the shell would, from the same
read-only copy BI tools use, so it never blocks a sync.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED = 0, 1, 2, 4
#: Rows one query prints at most.
MAX_ROWS = 10_000


def add_parser(commands: argparse._SubParsersAction) -> None:
    query = commands.add_parser(
        "query",
        help="run one SQL statement on the published copy and print the rows",
        description=(
            "Run one SQL statement, read-only, on the published copy of the "
            "warehouse (<warehouse>.published.duckdb) and print its rows. "
            "Exit codes: 0 ok, 1 the statement failed, 2 no published copy, "
            "4 another program has it open for writing."
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

    try:
        con = duckdb.connect(str(published), read_only=True)
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            print(
                f"efw query: another program has {published} open for writing; "
                "close it (BI tools and the duckdb shell should open it "
                "read-only) and try again.",
                file=sys.stderr,
            )
            return EXIT_LOCKED
        print(
            f"efw query: {published} cannot be read as DuckDB "
            f"({type(exc).__name__}); run `efw models` to publish it again.",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    with con:
        try:
            # Reads of this copy only: no files written or read elsewhere.
            con.execute("set enable_external_access = false")
            statements = con.extract_statements(args.sql)
            if len(statements) != 1:
                print(
                    f"efw query: give one SQL statement, not {len(statements)}.",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            # DuckDB plans the statement here and runs it only when the rows
            # are asked for: an error may come from either step.
            relation = con.sql(args.sql)
            if relation is not None:
                rows = relation.shape[0]
                table = io.StringIO()
                with contextlib.redirect_stdout(table):
                    relation.limit(args.max_rows).show(
                        max_rows=args.max_rows + 1, max_width=160
                    )
        except duckdb.Error as exc:
            print(f"efw query: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if relation is not None:
        text = table.getvalue()
        body, _, footer = text.rpartition("┘")
        sys.stdout.write(body + "┘\n")
        count = f"{rows:,} row{'' if rows == 1 else 's'}"
        if rows > args.max_rows:
            count += f" ({args.max_rows:,} shown)"
        # DuckDB's own line below the table says how many columns it hid.
        hidden = re.search(r"([\d,]+) columns \(([\d,]+) shown\)", footer)
        if hidden:
            count += f", {hidden[1]} columns ({hidden[2]} shown)"
        print(count)
    return EXIT_OK


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            f"must be 1 to {MAX_ROWS:,}, not {value}; `efw export` writes more"
        )
    return value
