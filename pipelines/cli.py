"""The `efw` command line: sync, demo, models, export, query and the emulator."""

from __future__ import annotations

import argparse
import os
import re
import sys

from pipelines import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="efw",
        description="A local warehouse of an ElasticFunnels brand's customers.",
    )
    parser.add_argument("--version", action="version", version=f"efw {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    # Each area registers its own subcommands, so this file stays a table of
    # contents. Imports are local to keep `efw --help` fast.
    from pipelines import commands as sync_commands
    from pipelines import models, query
    from pipelines.emulator import cli as emulator_cli

    sync_commands.add_parsers(commands)
    models.add_parsers(commands)
    query.add_parser(commands)
    emulator_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        # Before a command has started (dlt takes a second to import) or in
        # one that has no use for a message of its own.
        print("efw: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left early (`efw query ... | head`): nothing is wrong,
        # and nothing more can be said. Python's flush at exit would fail on
        # the same pipe, so stdout goes nowhere from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        if type(exc).__name__ != "TomlProviderReadException":
            raise
        # A syntax error in .dlt/config.toml or secrets.toml. The parser's
        # message may quote a character of a secret: only where it is.
        at = re.search(r"line (\d+) col (\d+)", str(exc))
        where = f" at line {at[1]}, column {at[2]}" if at else ""
        paths = [p for p in getattr(exc, "full_paths", []) if os.path.isfile(p)]
        print(
            f"efw: {', '.join(paths) or 'a settings file'} is not valid TOML"
            f"{where}; fix it and run the command again.",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
