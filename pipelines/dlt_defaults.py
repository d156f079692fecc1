"""dlt's own settings that efw relies on, in force from any working folder.

dlt reads `.dlt/config.toml` from the folder it runs in. Run from elsewhere,
a sync would otherwise report usage to dlt's makers, keep a copy of every
package it loaded and compress its working files. These defaults sit below
every other source of configuration: a `.dlt/config.toml` or an environment
variable still wins. The committed `.dlt/config.toml` repeats each of them
with its reason.
"""

from __future__ import annotations

import copy
from typing import Any

DLT_DEFAULTS: dict[str, Any] = {
    "runtime": {
        "dlthub_telemetry": False,
        "log_level": "WARNING",
        "log_format": "{asctime} {levelname} {name}: {message}",
    },
    "load": {"delete_completed_jobs": True},
    "data_writer": {"disable_compression": True},
    "extract": {"workers": 4},
    "sources": {"elasticfunnels": {"data_writer": {"file_max_items": 7000}}},
}

PROVIDER_NAME = "efw defaults"


def install() -> None:
    """Adds the defaults to dlt's configuration, last in its lookup order."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.providers import CustomLoaderDocProvider
    from dlt.common.configuration.specs.pluggable_run_context import (
        PluggableRunContext,
    )
    from dlt.common.runtime.telemetry import stop_telemetry

    context = Container()[PluggableRunContext]
    if PROVIDER_NAME in context.providers:
        return
    context.providers.add_provider(
        CustomLoaderDocProvider(
            PROVIDER_NAME,
            lambda: copy.deepcopy(DLT_DEFAULTS),
            supports_secrets=False,
            locations=["efw's built-in defaults"],
        )
    )
    # dlt set up its logging and telemetry when it first read configuration,
    # without these: set both up again.
    stop_telemetry()
    context.initialize_runtime()
