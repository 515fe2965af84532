"""The JSON-RPC HTTP server: a thin aiohttp layer over the Dispatcher.

With `threaded=True` (the node's default, [rpc] reader_thread) the listener, HTTP parsing,
WebSocket clients and the answers to committed-state reads run on a thread of their own
with its own event loop; everything else the dispatcher hands to the node's loop. A query
for an account or an order then waits neither for a block being executed or committed nor
for a batch of submissions being checked. The two loops share the GIL, so the switch
interval is lowered to let the RPC thread in within half a millisecond.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from node.explorer import add_explorer_routes
from node.rpc.dispatcher import Dispatcher
from node.rpc.errors import INVALID_REQUEST, TOO_MANY_REQUESTS

JSON = "application/json"
DISPATCHER = web.AppKey("dispatcher", Dispatcher)


def _too_large(limit: int) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None,
            "error": {"code": INVALID_REQUEST, "message": f"request body exceeds {limit} bytes"}}
    return web.Response(status=413, body=json.dumps(body), content_type=JSON)


AppSetup = Callable[[web.Application], None]  # adds routes/hooks (WebSocket, metrics, ...)


def make_app(dispatcher: Dispatcher, max_body_bytes: int,
             setup: Sequence[AppSetup] = ()) -> web.Application:
    async def post_root(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > max_body_bytes:
            return _too_large(max_body_bytes)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large(max_body_bytes)
        reply = await dispatcher.handle_body(body)
        if reply is None:
            return web.Response(status=204)
        return web.Response(body=reply, content_type=JSON)

    app = web.Application(client_max_size=max_body_bytes)
    app[DISPATCHER] = dispatcher
    app.router.add_post("/", post_root)
    add_explorer_routes(app)  # GET /explorer: the static block explorer
    for add in setup:
        add(app)
    return app


log = logging.getLogger("chainmerce.rpc")


class _Refuse(asyncio.Protocol):
    """A connection beyond the limit: answer its first request with a 503 JSON-RPC error
    and close (waiting for the request first, so the client reads the answer instead of a
    reset). One that sends nothing is closed after a short grace."""

    def __init__(self, limit: int):
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": TOO_MANY_REQUESTS,
            "message": f"too many open connections (the limit is {limit}); retry later",
            "data": {"name": "max_open_connections", "limit": limit}}}).encode()
        self.reply = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                      b"Connection: close\r\nRetry-After: 1\r\nContent-Length: "
                      + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        asyncio.get_running_loop().call_later(2.0, transport.close)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.reply)
            self.transport.close()


class ConnectionLimit:
    """aiohttp's protocol factory behind a count of open connections ([rpc]
    max_open_connections; 0 = no limit). Counted from creation to connection_lost, so a
    burst of accepts in one loop turn cannot overshoot."""

    def __init__(self, server: web.Server, limit: int):
        self.server, self.limit = server, limit
        self.open = 0
        self.refused = 0
        self._last_warning = 0.0
        inner_lost = server.connection_lost

        def connection_lost(handler, exc=None) -> None:
            self.open -= 1
            inner_lost(handler, exc)

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def __call__(self) -> asyncio.Protocol:
        if self.limit and self.open >= self.limit:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_warning > 10:
                self._last_warning = now
                log.warning("refusing RPC connections: %d open (max_open_connections), "
                            "%d refused so far", self.open, self.refused)
            return _Refuse(self.limit)
        self.open += 1
        return self.server()


class _LimitedSite(web.TCPSite):
    def __init__(self, runner: web.AppRunner, host: str, port: int, factory: ConnectionLimit):
        super().__init__(runner, host, port, reuse_address=True)
        self._factory = factory

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner
        self._server = await asyncio.get_running_loop().create_server(
            self._factory, self._host, self._port, reuse_address=True)


def _new_loop_like(loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """A new loop of the node loop's kind (uvloop under `chainmerce start`)."""
    if loop is not None and type(loop).__module__.startswith("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


SWITCH_INTERVAL_S = 0.0005  # Python's default is 5 ms: a read would wait that per GIL turn


class RPCServer:
    """Starts and stops the HTTP listener; the node owns one."""

    def __init__(self, dispatcher: Dispatcher, host: str, port: int, max_body_bytes: int,
                 setup: Sequence[AppSetup] = (), max_open_connections: int = 0,
                 threaded: bool = False):
        self.dispatcher = dispatcher
        self.app = make_app(dispatcher, max_body_bytes, setup)
        self.host, self.port = host, port
        self.max_open_connections = max_open_connections
        self.threaded = threaded
        self.connections: ConnectionLimit | None = None  # open / refused counts
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop serving HTTP
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    async def start(self) -> None:
        if not self.threaded:
            self.loop = asyncio.get_running_loop()
            await self._listen()
            return
        self.dispatcher.node_loop = asyncio.get_running_loop()
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve_thread, args=(ready,), name="rpc",
                                        daemon=True)
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)  # the bind error, if any, is raised here
        except BaseException:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
            raise

    def _serve_thread(self, ready: concurrent.futures.Future[None]) -> None:
        loop = _new_loop_like(self.dispatcher.node_loop)
        self.loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        self._stop = asyncio.Event()
        try:
            await self._listen()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        await self._stop.wait()
        await self._close()

    async def _listen(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        assert self._runner.server is not None
        self.connections = ConnectionLimit(self._runner.server, self.max_open_connections)
        site = _LimitedSite(self._runner, self.host, self.port, self.connections)
        await site.start()
        if self.port == 0:  # tests ask for a free port; report the one the OS chose
            server = site._server
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        thread = self._thread
        if thread is None:
            await self._close()
            return
        loop, stop = self.loop, self._stop
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass  # its loop already ended
        # In-flight requests may still be waiting for this loop while the thread drains.
        await asyncio.to_thread(thread.join)
        self._thread = None

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
