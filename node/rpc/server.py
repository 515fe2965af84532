"""The JSON-RPC HTTP server: a thin aiohttp layer over the Dispatcher."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from aiohttp import web

from node.explorer import add_explorer_routes
from node.rpc.dispatcher import Dispatcher
from node.rpc.errors import INVALID_REQUEST

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


class RPCServer:
    """Starts and stops the HTTP listener; the node owns one."""

    def __init__(self, dispatcher: Dispatcher, host: str, port: int, max_body_bytes: int,
                 setup: Sequence[AppSetup] = ()):
        self.app = make_app(dispatcher, max_body_bytes, setup)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # tests ask for a free port; report the one the OS chose
            server = site._server
            if server is not None and server.sockets:
                self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
