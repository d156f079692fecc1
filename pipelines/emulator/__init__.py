"""An emulator of the ElasticFunnels customers API, for tests, drills and demos.

Nobody can reach the real API from here, so the project serves its own: the
same routes, bodies, errors and quirks as the vendor's contract describes,
over data held in memory, with faults that can be switched on at will.

    emulator = Emulator.cdnow(max_customers=2000)
    client = httpx.Client(transport=emulator.transport(), base_url=...)
    with emulator.serve() as base_url:  # or over a real loopback socket
        ...
"""

from pipelines.emulator.app import (
    ALLOWED_COLUMNS,
    DEFAULT_BRAND,
    DEFAULT_KEY,
    Emulator,
    EmulatorRequest,
    Reply,
)
from pipelines.emulator.faults import BAD_DATA_KINDS, Faults, FaultsError

__all__ = [
    "ALLOWED_COLUMNS",
    "BAD_DATA_KINDS",
    "DEFAULT_BRAND",
    "DEFAULT_KEY",
    "Emulator",
    "EmulatorRequest",
    "Faults",
    "FaultsError",
    "Reply",
]
