"""The emulator over real HTTP: a thin Starlette adapter run by uvicorn.

All request handling lives in `Emulator.handle`; this module only turns an
ASGI request into an `EmulatorRequest`, carries out the `Reply` (sleeping,
stalling or dropping the connection as told) and runs uvicorn on a socket it
binds itself, so port 0 works and the real port is known before serving.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipelines.emulator.app import EmulatorRequest, raw_path_text

if TYPE_CHECKING:
    from pipelines.emulator.app import Emulator

#: The scope extension through which the runner lets the app drop a connection.
ABORT_EXTENSION = "efw.abort_connection"
#: And through which it tells the app that the server is shutting down.
STOP_EXTENSION = "efw.server_stopping"

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_START_TIMEOUT = 10.0


class EmulatedDrop(ConnectionAbortedError):
    """Raised mid-response to drop a connection when the server cannot abort."""


def build_app(emulator: Emulator) -> Starlette:
    """The Starlette app serving `emulator`; every path goes to its handler."""

    async def endpoint(request: Request) -> Response:
        arrived = time.monotonic()
        scope = request.scope
        raw_path = scope.get("raw_path") or scope["path"].encode()
        emulated = EmulatorRequest(
            method=request.method,
            # The raw path, because Starlette has already decoded %2F in
            # scope["path"], which would split an email in two.
            path=raw_path_text(raw_path),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=tuple(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in scope["headers"]
            ),
            body=await request.body(),
            scheme=scope.get("scheme", "http"),
        )
        if _is_admin(emulated.path):
            # Moving the clock of a large store can take a while; off the loop.
            reply = await run_in_threadpool(emulator.handle, emulated)
        else:
            # A customers request is a millisecond or two of CPU, less than a
            # hop to a worker thread and back costs under load.
            reply = emulator.handle(emulated)

        if wait := reply.wait_left(arrived):
            await anyio.sleep(wait)
        if reply.action == "drop":
            return _Dropped(scope.get("extensions", {}).get(ABORT_EXTENSION))
        if reply.action == "stall":
            extensions = scope.get("extensions", {})
            ended = await _stall(
                request.receive, reply.stall_seconds, extensions.get(STOP_EXTENSION)
            )
            if ended == "client left":
                return _Dropped(None, quiet=True)
            if ended == "server stopping":
                # Close the connection, as a server going away does, before
                # uvicorn's shutdown cancels the request and answers 500.
                return _Dropped(extensions.get(ABORT_EXTENSION))
        return Response(reply.body, reply.status, headers=dict(reply.headers))

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])


def _is_admin(path: str) -> bool:
    return path.startswith(("/_emulator/", "/api/_emulator/"))


class _Dropped(Response):
    """A response that closes the connection instead of answering."""

    def __init__(self, abort: Callable[[], None] | None, quiet: bool = False):
        super().__init__()
        self._abort = abort
        self._quiet = quiet

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._quiet:
            return
        if self._abort is not None:
            self._abort()
            # Let the loop run connection_lost, so the server knows the
            # client is gone and does not answer 500 in our place.
            await anyio.sleep(0.01)
            return
        # Under a server that cannot abort: start the answer, then fail, and
        # the server closes the connection mid-response.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise EmulatedDrop("emulated dropped connection")


async def _stall(
    receive: Callable[[], Any],
    seconds: float,
    stopping: Callable[[], bool] | None,
) -> str | None:
    """Wait `seconds`; end early when the client disconnects or the server
    starts shutting down, saying which."""
    deadline = anyio.current_time() + seconds
    while (left := deadline - anyio.current_time()) > 0:
        if stopping is not None and stopping():
            return "server stopping"
        with anyio.move_on_after(min(left, 0.1)):
            message = await receive()
            if message["type"] == "http.disconnect":
                return "client left"
    return None


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on `host:port`; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Naming the protocol matters: asyncio sets TCP_NODELAY only on sockets
    # whose proto is IPPROTO_TCP, and without it every answer waits ~40 ms
    # for a delayed ACK, because uvicorn writes headers and body apart.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        # Listening now lets clients connect (into the backlog) as soon as
        # the URL is printed, even before uvicorn starts accepting.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def base_url(sock: socket.socket) -> str:
    """The API base URL for a bound socket, such as http://127.0.0.1:8080/api."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/api"


def make_server(emulator: Emulator, *, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for `emulator`, not yet started.

    Access logs are off: the paths carry customer emails.
    """
    server: uvicorn.Server

    def abort(client: Any) -> None:
        # uvicorn keeps its open connections; find this request's by the
        # client address and abort it, so no byte of a response goes out.
        for connection in list(server.server_state.connections):
            if getattr(connection, "client", None) == client:
                connection.transport.abort()

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            client = scope.get("client")
            extensions[ABORT_EXTENSION] = lambda: abort(client)
            extensions[STOP_EXTENSION] = lambda: server.should_exit
            scope = {**scope, "extensions": extensions}
        await emulator.app(scope, receive, send)

    config = uvicorn.Config(
        asgi,
        # httptools and uvloop where installed (pinned, uvloop but on
        # Windows): a sixth less CPU a request than h11 and asyncio, CPU
        # that on a small machine is taken from the client being served.
        http="auto",
        loop="auto",
        lifespan="off",
        log_config=None,
        log_level=log_level,
        access_log=False,
        # The handler writes its own Date header; uvicorn would add another.
        date_header=False,
        server_header=False,
        # Stalled requests must not hold up shutdown for long.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    return server


@contextmanager
def serve_in_thread(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Run `emulator` under uvicorn in a background thread; yield its base URL."""
    sock = bind_socket(host, port)
    server = make_server(emulator)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]},
        name="efw-emulator",
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator's HTTP server did not start")
            time.sleep(0.005)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=_START_TIMEOUT)
        sock.close()


def serve_forever(emulator: Emulator, sock: socket.socket) -> None:
    """Serve on `sock` in this thread until interrupted (Ctrl-C, SIGTERM)."""
    make_server(emulator, log_level="info").run(sockets=[sock])
