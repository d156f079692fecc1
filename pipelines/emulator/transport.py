"""The emulator in-process: an httpx transport, no socket involved.

`EmulatorTransport` serves both `httpx.Client` and `httpx.AsyncClient` by
calling `Emulator.handle` directly, and acts out the faults the way a network
would show them to httpx: a dropped connection raises `RemoteProtocolError`,
a stall longer than the request's read timeout raises `ReadTimeout`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import httpx

from pipelines.emulator.app import EmulatorRequest, Reply, raw_path_text

if TYPE_CHECKING:
    from pipelines.emulator.app import Emulator


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Send httpx requests straight to an `Emulator`'s handler.

    Thread-safe: the emulator locks its own state, so one transport may serve
    a client shared by many threads.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from a synchronous `httpx.Client`."""
        arrived = time.monotonic()
        reply = self.emulator.handle(_emulated(request, request.read()))
        if wait := reply.wait_left(arrived):
            time.sleep(wait)
        if reply.action == "drop":
            raise _dropped(request)
        if reply.action == "stall":
            timeout = _read_timeout(request)
            if timeout is not None and timeout < reply.stall_seconds:
                time.sleep(timeout)
                raise _timed_out(request)
            time.sleep(reply.stall_seconds)
        return _response(reply)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a request from an `httpx.AsyncClient`."""
        arrived = time.monotonic()
        reply = self.emulator.handle(_emulated(request, await request.aread()))
        if wait := reply.wait_left(arrived):
            await anyio.sleep(wait)
        if reply.action == "drop":
            raise _dropped(request)
        if reply.action == "stall":
            timeout = _read_timeout(request)
            if timeout is not None and timeout < reply.stall_seconds:
                await anyio.sleep(timeout)
                raise _timed_out(request)
            await anyio.sleep(reply.stall_seconds)
        return _response(reply)


def _emulated(request: httpx.Request, body: bytes) -> EmulatorRequest:
    # raw_path holds the path and the query, both still percent-encoded.
    path, _, query = request.url.raw_path.partition(b"?")
    return EmulatorRequest(
        method=request.method,
        path=raw_path_text(path),
        query=query.decode("latin-1"),
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in request.headers.raw
        ),
        body=body,
        scheme=request.url.scheme,
    )


def _response(reply: Reply) -> httpx.Response:
    return httpx.Response(reply.status, headers=reply.headers, content=reply.body)


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("read")


def _dropped(request: httpx.Request) -> httpx.RemoteProtocolError:
    message = "Server disconnected without sending a response."
    return httpx.RemoteProtocolError(message, request=request)


def _timed_out(request: httpx.Request) -> httpx.ReadTimeout:
    return httpx.ReadTimeout("timed out", request=request)
