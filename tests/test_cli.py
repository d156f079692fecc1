"""The `efw` entry point itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pipelines.cli as cli


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
