"""The `efw` entry point itself."""

from __future__ import annotations

import pipelines.cli as cli


def test_ctrl_c_before_a_command_starts_is_one_line(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["query", "select 1"]) == 130
    assert capsys.readouterr().err == "efw: interrupted\n"
