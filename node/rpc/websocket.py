"""WebSocket subscriptions at /websocket: JSON-RPC 2.0 over the socket, plus event streams.

Ordinary methods go through the same Dispatcher as HTTP. `subscribe` names a stream:

    {"stream": "new_block"}                      every committed block (header, tx count)
    {"stream": "tx", "account": "cm1..."}        committed txs that involve the account
    {"stream": "order", "order": 5}              status changes of one order
    {"stream": "order", "account": "cm1..."}     ... of orders where it is buyer or merchant
    {"stream": "listing", "merchant": "cm1..."}  listings a merchant creates/updates/delists

and answers a subscription id. Each notification is
`{"jsonrpc":"2.0","method":"subscription","params":{"subscription": id, "seq": n,
"result": {...}}}` where `seq` counts 1, 2, 3... per subscription, so a client sees a gap.

The commit listener never blocks: it only appends to each client's bounded outgoing
queue. A client whose queue is full is disconnected (close code 1008, reason "slow
client"); it can reconnect and catch up from `tx_search`/`block`. Limits: clients per
node, subscriptions per client, queued messages per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from core.address import address_to_text
from node.app import CommittedBlock, involved_addresses
from node.rpc.dispatcher import Dispatcher, Method
from node.rpc.errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    TOO_MANY_REQUESTS,
    RPCError,
    invalid_params,
)
from node.rpc.params import Param, bind
from node.views import header_view, result_view, tx_view

if TYPE_CHECKING:
    from node.node import Node

log = logging.getLogger("chainmerce.ws")

STREAMS = ("new_block", "tx", "order", "listing")
LISTING_EVENTS = ("listing_created", "listing_updated", "listing_delisted")
SLOW_CLIENT = "slow client: outgoing queue full"
MAX_INFLIGHT_CALLS = 16  # ordinary calls one client may have running at once
CLOSE_TIMEOUT_S = 2.0
DROP_CLOSE_TIMEOUT_S = 0.5  # a dropped client gets this long to take the close frame
# Kernel send buffer of a WebSocket connection. Bounded (instead of autotuned up to
# megabytes) so what a client that stops reading can hold is this plus its queue.
SEND_BUFFER_BYTES = 256 * 1024

SUBSCRIBE_PARAMS = (
    Param("stream", "str", "new_block | tx | order | listing", required=True, max_len=16),
    Param("account", "address", "tx: the account; order: orders it buys or sells"),
    Param("order", "int", "order: one order id", minimum=1),
    Param("merchant", "address", "listing: the merchant"),
)
UNSUBSCRIBE_PARAMS = (
    Param("subscription", "int", "the id subscribe answered", required=True, minimum=1),
)

Key = tuple[Any, ...]


@dataclass(slots=True)
class Subscription:
    id: int
    key: Key
    client: WSClient
    seq: int = 0


@dataclass(eq=False, slots=True)
class WSClient:
    ws: web.WebSocketResponse
    request: web.Request
    max_queue: int
    queue: deque[str] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    dropped: bool = False
    writer: asyncio.Task | None = None
    calls: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_INFLIGHT_CALLS))

    def enqueue(self, text: str) -> bool:
        """Queue one message; False when the client is (now) dropped as too slow."""
        if self.dropped:
            return False
        if len(self.queue) >= self.max_queue:
            self.dropped = True
            self.wake.set()
            return False
        self.queue.append(text)
        self.wake.set()
        return True


def subscription_key(stream: str, account: bytes | None, order: int | None,
                     merchant: bytes | None) -> Key:
    """The routing key of a subscribe request, or an invalid-params error."""
    given = {"account": account, "order": order, "merchant": merchant}
    allowed = {"new_block": (), "tx": ("account",), "order": ("account", "order"),
               "listing": ("merchant",)}
    if stream not in allowed:
        raise invalid_params(f"unknown stream {stream!r}; one of {', '.join(STREAMS)}")
    extra = [k for k, v in given.items() if v is not None and k not in allowed[stream]]
    if extra:
        raise invalid_params(f"stream {stream} takes no {extra[0]}")
    if stream == "new_block":
        return ("new_block",)
    if stream == "tx":
        if account is None:
            raise invalid_params("stream tx needs account")
        return ("tx", account)
    if stream == "listing":
        if merchant is None:
            raise invalid_params("stream listing needs merchant")
        return ("listing", merchant)
    if (account is None) == (order is None):
        raise invalid_params("stream order needs exactly one of order, account")
    return ("order_id", order) if order is not None else ("order_account", account)


class SubscriptionHub:
    """Every connected client and subscription; fed by the node's commit listener."""

    def __init__(self, dispatcher: Dispatcher, max_clients: int, max_subscriptions: int,
                 max_queue: int):
        self.dispatcher = dispatcher
        self.max_clients = max_clients
        self.max_subscriptions = max_subscriptions
        self.max_queue = max_queue
        self.clients: set[WSClient] = set()
        self.routes: dict[Key, dict[int, Subscription]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop serving its sockets
        self._ids = itertools.count(1)
        self.dropped_slow = 0

    # --- subscriptions ----------------------------------------------------------------------

    def subscribe(self, client: WSClient, params: Any) -> int:
        args = bind(SUBSCRIBE_PARAMS, params)
        key = subscription_key(**args)
        if len(client.subscriptions) >= self.max_subscriptions:
            raise RPCError(TOO_MANY_REQUESTS,
                           f"at most {self.max_subscriptions} subscriptions per client")
        sub = Subscription(next(self._ids), key, client)
        client.subscriptions[sub.id] = sub
        self.routes.setdefault(key, {})[sub.id] = sub
        return sub.id

    def unsubscribe(self, client: WSClient, params: Any) -> bool:
        sub_id = bind(UNSUBSCRIBE_PARAMS, params)["subscription"]
        sub = client.subscriptions.pop(sub_id, None)
        if sub is None:
            raise RPCError(INVALID_PARAMS, f"invalid params: no subscription {sub_id}")
        self._unroute(sub)
        return True

    def unsubscribe_all(self, client: WSClient) -> int:
        count = len(client.subscriptions)
        for sub in client.subscriptions.values():
            self._unroute(sub)
        client.subscriptions.clear()
        return count

    def _unroute(self, sub: Subscription) -> None:
        subs = self.routes.get(sub.key)
        if subs is not None:
            subs.pop(sub.id, None)
            if not subs:
                del self.routes[sub.key]

    # --- events -----------------------------------------------------------------------------

    def on_commit(self, committed: CommittedBlock) -> None:
        """The commit listener: route this block's events; never blocks, never awaits."""
        if not self.routes:
            return
        for key, result in block_events(committed, self.routes):
            for sub in list(self.routes.get(key, {}).values()):
                sub.seq += 1
                message = json.dumps({"jsonrpc": "2.0", "method": "subscription",
                                      "params": {"subscription": sub.id, "seq": sub.seq,
                                                 "result": result}}, separators=(",", ":"))
                if not sub.client.enqueue(message):
                    self._drop(sub.client)

    def _drop(self, client: WSClient) -> None:
        if client.subscriptions:  # the first overflow: later ones find none left
            self.dropped_slow += 1
            log.warning("dropping slow WebSocket client %s", client.request.remote)
            self.unsubscribe_all(client)
            self.clients.discard(client)
            asyncio.get_running_loop().create_task(self._close(client))

    # --- the socket -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if len(self.clients) >= self.max_clients:
            raise web.HTTPServiceUnavailable(text=f"at most {self.max_clients} WebSocket clients")
        ws = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=30)
        await ws.prepare(request)
        sock = request.transport.get_extra_info("socket") if request.transport else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        client = WSClient(ws, request, self.max_queue)
        self.clients.add(client)
        client.writer = asyncio.create_task(self._write_loop(client))
        try:
            async for msg in ws:
                if client.dropped:
                    break
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(client, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    client.enqueue(_error_text(None, RPCError(INVALID_REQUEST,
                                                              "send JSON-RPC as text frames")))
        finally:
            self.unsubscribe_all(client)
            self.clients.discard(client)
            await self._close(client)
        return ws

    async def _on_text(self, client: WSClient, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            client.enqueue(_error_text(None, RPCError(PARSE_ERROR, "parse error: not JSON")))
            return
        method = request.get("method") if isinstance(request, dict) else None
        if method in ("subscribe", "unsubscribe", "unsubscribe_all") and \
                request.get("jsonrpc") == "2.0":
            # Answered at once, on this loop turn: the reply is queued before any
            # notification of the new subscription can be.
            request_id = request.get("id")
            try:
                if method == "subscribe":
                    result: Any = {"subscription": self.subscribe(client, request.get("params"))}
                elif method == "unsubscribe":
                    result = self.unsubscribe(client, request.get("params"))
                else:
                    bind((), request.get("params"))
                    result = {"unsubscribed": self.unsubscribe_all(client)}
            except RPCError as exc:
                client.enqueue(_error_text(request_id, exc))
                return
            client.enqueue(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}))
            return
        await client.calls.acquire()
        asyncio.create_task(self._call(client, text))

    async def _call(self, client: WSClient, text: str) -> None:
        try:
            reply = await self.dispatcher.handle_body(text.encode())
            if reply is not None:
                client.enqueue(reply.decode())
        finally:
            client.calls.release()

    async def _write_loop(self, client: WSClient) -> None:
        ws = client.ws
        while not client.dropped and not ws.closed:
            while client.queue and not client.dropped:
                await ws.send_str(client.queue.popleft())
            if client.dropped:
                break
            client.wake.clear()
            await client.wake.wait()

    async def _close(self, client: WSClient) -> None:
        """Stop the writer, send a close frame if the socket takes it, then cut the
        connection: a client that never reads would never answer the close."""
        writer = client.writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
        if client.ws.closed:
            return
        if client.dropped:
            code, reason = WSCloseCode.POLICY_VIOLATION, SLOW_CLIENT
        else:
            code, reason = WSCloseCode.GOING_AWAY, "closing"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.ws.close(code=code, message=reason.encode()),
                                   DROP_CLOSE_TIMEOUT_S if client.dropped else CLOSE_TIMEOUT_S)
        transport = client.request.transport
        if client.dropped and transport is not None:
            transport.abort()

    async def close_all(self, _app: web.Application | None = None) -> None:
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.close(code=WSCloseCode.GOING_AWAY,
                                                       message=b"node shutting down"),
                                       CLOSE_TIMEOUT_S)


def _error_text(request_id: Any, exc: RPCError) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()})


# --- what a block tells each stream -----------------------------------------------------------

def block_events(committed: CommittedBlock, routes: dict[Key, Any]) -> Iterator[tuple[Key, Any]]:
    """(routing key, notification result) for every event of the block, in chain order:
    the new block first, then each tx in block order (its tx, order and listing events),
    then the block-level events (expirations). Only keys someone listens to are built."""
    block = committed.block
    height = block.header.height
    if ("new_block",) in routes:
        yield ("new_block",), {"stream": "new_block", "height": height,
                               "header": header_view(block.header), "num_txs": len(block.txs),
                               "block_events": len(committed.execution.events)}
    wants_tx = any(k[0] == "tx" for k in routes)
    for index, (tx, result) in enumerate(zip(committed.txs, committed.execution.results,
                                             strict=True)):
        tx_hash = tx.hash.hex()
        if wants_tx:
            view = None
            for account in involved_addresses(tx, result):
                if ("tx", account) in routes:
                    if view is None:
                        view = {"stream": "tx", "height": height, "index": index,
                                "hash": tx_hash, "tx": tx_view(tx),
                                "result": _result_json(result)}
                    yield ("tx", account), view
        yield from _commerce_events(result.events, height, tx_hash, routes)
    yield from _commerce_events(committed.execution.events, height, None, routes)


def _commerce_events(events: list, height: int, tx_hash: str | None,
                     routes: dict[Key, Any]) -> Iterator[tuple[Key, Any]]:
    for event in events:
        attrs = event.attributes
        if event.kind == "order_status":
            keys = [("order_id", attrs["order_id"]), ("order_account", attrs["buyer"]),
                    ("order_account", attrs["merchant"])]
            if attrs["buyer"] == attrs["merchant"]:
                keys.pop()
            keys = [k for k in keys if k in routes]
            if keys:
                result = {"stream": "order", "height": height, "tx_hash": tx_hash,
                          "order_id": attrs["order_id"], "status": attrs["status"],
                          "reason": attrs["reason"], "buyer": address_to_text(attrs["buyer"]),
                          "merchant": address_to_text(attrs["merchant"])}
                for key in keys:
                    yield key, result
        elif event.kind in LISTING_EVENTS and ("listing", attrs["merchant"]) in routes:
            yield ("listing", attrs["merchant"]), {
                "stream": "listing", "height": height, "tx_hash": tx_hash, "event": event.kind,
                "listing_id": attrs["listing_id"], "merchant": address_to_text(attrs["merchant"])}


def _result_json(result: Any) -> dict[str, Any]:
    return result_view({"code": result.code, "name": result.name, "message": result.message,
                        "fee_charged": result.fee_charged, "tx_type": result.tx_type,
                        "events": [{"kind": e.kind, "attributes": e.attributes}
                                   for e in result.events]})


# --- wiring ---------------------------------------------------------------------------------

def register(d: Dispatcher, node: Node) -> None:
    """subscribe/unsubscribe in the method table (so rpc.discover documents them; over HTTP
    they answer an error), the hub as a commit listener, and the /websocket route."""
    rpc = node.config["rpc"]
    hub = SubscriptionHub(d, rpc["ws_max_clients"], rpc["ws_max_subscriptions"],
                          rpc["ws_max_queued_messages"])
    node.subscriptions = hub

    def on_commit(committed: CommittedBlock) -> None:
        """The hub lives on the loop that serves HTTP, which may be the RPC thread's: the
        block goes there (it is not changed after its commit)."""
        loop = hub.loop
        if loop is None or loop is asyncio.get_running_loop():
            hub.on_commit(committed)
            return
        try:
            loop.call_soon_threadsafe(hub.on_commit, committed)
        except RuntimeError:
            pass  # the RPC thread's loop has ended: no client is left to tell

    node.events.commit_listeners.append(on_commit)

    def websocket_only(**_: Any) -> None:
        raise RPCError(INVALID_REQUEST, "subscriptions need a WebSocket: connect to /websocket")

    d.register(Method("subscribe", websocket_only, SUBSCRIBE_PARAMS,
                      "WebSocket only: subscribe to a stream (new_block, tx, order, listing); "
                      "answers {subscription: id}; notifications carry a per-subscription seq.",
                      errors=(INVALID_REQUEST, TOO_MANY_REQUESTS)))
    d.register(Method("unsubscribe", websocket_only, UNSUBSCRIBE_PARAMS,
                      "WebSocket only: end one subscription.", errors=(INVALID_REQUEST,)))
    d.register(Method("unsubscribe_all", websocket_only, (),
                      "WebSocket only: end every subscription of this connection.",
                      errors=(INVALID_REQUEST,)))

    async def bind_loop(_app: web.Application) -> None:
        hub.loop = asyncio.get_running_loop()

    def setup(app: web.Application) -> None:
        app.router.add_get("/websocket", hub.handle)
        app.on_startup.append(bind_loop)
        app.on_shutdown.append(hub.close_all)

    node.http_setup.append(setup)
