#!/usr/bin/env python3
"""Set up `.venv` from the pinned requirements, then run the demo or the tests.

    python3 dev.py demo [efw demo options]
    python3 dev.py test [pytest options]

Needs only Python 3.11 or newer and access to PyPI. The environment is built
once and rebuilt when `requirements.lock` or `pyproject.toml` change.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".efw-installed"
INPUTS = (ROOT / "requirements.lock", ROOT / "pyproject.toml")


def ensure_environment() -> None:
    if STAMP.exists() and all(
        STAMP.stat().st_mtime >= path.stat().st_mtime for path in INPUTS
    ):
        return
    if not PYTHON.exists():
        print(f"creating {VENV.name}/ ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet"]
    print("installing the pinned requirements ...", flush=True)
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.touch()


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print("efw needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "demo":
        args = [str(PYTHON), "-m", "pipelines.cli", "demo", *rest]
    else:
        args = [str(PYTHON), "-m", "pytest", *rest]
    return subprocess.run(args, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
