"""The scheduling units in deploy/ and what the README says of them agree."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_shows_the_crontab_line_that_ships():
    [line] = [
        line
        for line in (ROOT / "deploy" / "crontab").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert line in (ROOT / "README.md").read_text().splitlines()


def test_the_service_runs_efw_sync_from_its_working_folder():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy" / "efw-sync.service").read_text())
    service = unit["Service"]
    folder = service["WorkingDirectory"]
    assert service["ExecStart"] == f"{folder}/.venv/bin/efw sync"
    assert service["Type"] == "oneshot"
    assert service["User"] and service["TimeoutStartSec"]
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read_string((ROOT / "deploy" / "efw-sync.timer").read_text())
    assert timer["Timer"]["Persistent"] == "true"
