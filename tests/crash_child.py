"""A sync that kills itself with SIGKILL at a chosen point: the child process
of the crash drill (`tests/test_drills_crash.py`).

    python -m tests.crash_child '{"point": "after_extract", "warehouse": ...}'

The argument is a JSON object: `point`, `warehouse`, `now` (ISO instant),
`source` (arguments of the source: base_url, brand, access_key, ...) and
`after` (how many pages, details or jobs to let through first). The kill
points use only `run_sync`'s hooks and progress callback, except the two in
the middle of a load, which patch dlt in this process alone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import datetime
from typing import Any


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def patch_after_job_recorded(after: int) -> None:
    """Dies once `after` load jobs are done and recorded as done."""
    from dlt.common.storages.load_package import PackageStorage

    original = PackageStorage.complete_job
    done = []

    def complete_job(self: Any, load_id: str, file_name: str) -> str:
        path = original(self, load_id, file_name)
        done.append(file_name)
        if len(done) >= after:
            die()
        return path

    PackageStorage.complete_job = complete_job


def patch_after_rows_written(table: str) -> None:
    """Dies right after a load job of `table` wrote its rows into DuckDB and
    before dlt records the job as done: the worst moment, as a rerun cannot
    tell the rows are already there."""
    from dlt.destinations.impl.duckdb import duck

    original = duck.DuckDbCopyJob.run

    def run(self: Any) -> None:
        original(self)
        if self.load_table_name == table:
            die()

    duck.DuckDbCopyJob.run = run


def main(spec: dict[str, Any]) -> None:
    from pipelines.sync import run_sync

    point, after = spec["point"], int(spec.get("after", 1))
    hooks: dict[str, Any] = {}
    on_progress = None
    if point in ("after_pending", "after_extract", "after_normalize", "after_load"):
        hooks[point] = die
    elif point == "list_pages":

        def on_progress(run: Any) -> None:
            if run.pages >= after:
                die()

    elif point == "details":

        def on_progress(run: Any) -> None:
            if run.details_fetched >= after:
                die()

    elif point == "job_recorded":
        patch_after_job_recorded(after)
    elif point.startswith("rows_written:"):
        patch_after_rows_written(point.split(":", 1)[1])
    else:
        raise SystemExit(f"unknown kill point {point!r}")

    run_sync(
        full=bool(spec.get("full")),
        warehouse=spec["warehouse"],
        now=datetime.fromisoformat(spec["now"]),
        build=False,
        hooks=hooks,
        on_progress=on_progress,
        **spec["source"],
    )
    # Reaching this line means the kill point never came.
    raise SystemExit(f"the sync finished without reaching {point!r}")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
