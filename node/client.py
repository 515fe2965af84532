"""Python clients of a chainmerce node (see docs/client.md).

- `Client`: synchronous, stdlib only (the CLI uses it): `call(method, **params)` -> raw JSON.
- `TypedClient`: the same plus typed answers (`status()`, `account()`, `order()`, ...).
- `AsyncClient`: asyncio/aiohttp, the same typed methods, and `subscribe(...)`, an async
  iterator over WebSocket notifications that checks their sequence numbers.

Errors from the node raise `ClientError` with the JSON-RPC code and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_URL = "http://127.0.0.1:26657"


class ClientError(Exception):
    """An error answer from the node, or no answer at all.

    `code` is the JSON-RPC error code (None when the node could not be reached); `data` is
    the error's data member, e.g. {"name": "insufficient_balance", "rule": "..."}.
    """

    def __init__(self, message: str, code: int | None = None, data: Any = None):
        super().__init__(message)
        self.code = code
        self.data = data


class Client:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = 35.0):
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                           "params": {k: v for k, v in params.items() if v is not None}})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(f"cannot reach node at {self.url}: {reason}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise ClientError(f"node at {self.url} answered with something that is not JSON") from None
        return _result(reply)


def _result(reply: Any) -> Any:
    """The result of a JSON-RPC reply, or its error raised as ClientError."""
    if not isinstance(reply, dict):
        raise ClientError("unexpected reply from node")
    if "error" in reply:
        error = reply["error"] or {}
        raise ClientError(str(error.get("message", "unknown error")), error.get("code"),
                          error.get("data"))
    return reply.get("result")


# --- typed answers ------------------------------------------------------------------------
# Small views of the common answers; `raw` keeps the whole JSON answer for everything else.


@dataclass(frozen=True, slots=True)
class Status:
    chain_id: str
    moniker: str
    height: int
    block_hash: str
    catching_up: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        sync = data["sync_info"]
        return cls(data["node_info"]["chain_id"], data["node_info"]["moniker"],
                   sync["latest_block_height"], sync["latest_block_hash"],
                   bool(sync.get("catching_up")), data)


@dataclass(frozen=True, slots=True)
class Account:
    address: str
    balance: int
    nonce: int
    next_nonce: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        return cls(data["address"], data["balance"], data["nonce"],
                   data.get("next_nonce", data["nonce"]), data)


@dataclass(frozen=True, slots=True)
class Listing:
    id: int
    merchant: str
    title: str
    price: int
    quantity: int
    active: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Listing:
        return cls(data["id"], data["merchant"], data["title"], data["price"],
                   data["quantity"], data["active"], data)


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    listing_id: int
    buyer: str
    merchant: str
    status: str
    quantity: int
    amount: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Order:
        return cls(data["id"], data["listing_id"], data["buyer"], data["merchant"],
                   data["status"], data["quantity"], data["amount"], data)


@dataclass(frozen=True, slots=True)
class TxResult:
    """The outcome of broadcast_tx_commit: code 0 is success; a business-rule failure is
    committed too (fee charged) with the VM's code and name."""

    hash: str
    height: int
    index: int
    code: int
    name: str
    message: str
    events: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.code == 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TxResult:
        return cls(data["hash"], data["height"], data["index"], data["code"], data["name"],
                   data["message"], data.get("events", []), data)


@dataclass(frozen=True, slots=True)
class BlockHeader:
    height: int
    hash: str
    time_ms: int
    proposer: str
    app_hash: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockHeader:
        return cls(data["height"], data["hash"], data["time_ms"], data["proposer"],
                   data["app_hash"], data)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Any]
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class Notification:
    """One event of a subscription: `seq` counts 1, 2, 3... per subscription."""

    subscription: int
    seq: int
    stream: str
    result: dict[str, Any]


class SubscriptionGap(ClientError):
    """Notifications were lost (the node dropped this client as too slow, or a gap in
    seq): re-read the missed range with tx_search/block and subscribe again."""


def _typed(method: str, result: Any) -> Any:
    kind = _TYPED.get(method)
    return result if kind is None else kind(result)


def _page(kind: Any) -> Any:
    return lambda r: Page([kind.from_json(i) for i in r["items"]], r["next_cursor"])


_TYPED: dict[str, Any] = {
    "status": Status.from_json, "account": Account.from_json, "listing": Listing.from_json,
    "order": Order.from_json, "broadcast_tx_commit": TxResult.from_json,
    "listings": _page(Listing), "orders": _page(Order),
    "block": lambda r: BlockHeader.from_json(r["header"]),
}


class _TypedMethods:
    """The common methods with typed answers; `call` stays for everything else (raw)."""

    def _typed_call(self, method: str, **params: Any) -> Any:
        raise NotImplementedError

    def status(self) -> Status:
        return self._typed_call("status")

    def account(self, address: str) -> Account:
        return self._typed_call("account", address=address)

    def listing(self, listing_id: int) -> Listing:
        return self._typed_call("listing", id=listing_id)

    def listings(self, merchant: str | None = None, limit: int = 20,
                 cursor: int | None = None) -> Page:
        return self._typed_call("listings", merchant=merchant, limit=limit, cursor=cursor)

    def order(self, order_id: int) -> Order:
        return self._typed_call("order", id=order_id)

    def orders(self, buyer: str | None = None, merchant: str | None = None,
               listing: int | None = None, limit: int = 20, cursor: int | None = None) -> Page:
        return self._typed_call("orders", buyer=buyer, merchant=merchant, listing=listing,
                                limit=limit, cursor=cursor)

    def block_header(self, height: int | None = None) -> BlockHeader:
        return self._typed_call("block", height=height)

    def broadcast_tx_commit(self, tx: bytes | str) -> TxResult:
        return self._typed_call("broadcast_tx_commit", tx=tx if isinstance(tx, str) else tx.hex())


class TypedClient(Client, _TypedMethods):
    """The sync client with typed answers: `TypedClient(url).account("cm1...").balance`."""

    def _typed_call(self, method: str, **params: Any) -> Any:
        return _typed(method, self.call(method, **params))


class AsyncClient(_TypedMethods):
    """asyncio client (aiohttp): `await client.call(...)`, typed methods
    (`await client.order(5)`), and `client.subscribe(stream, **filters)`, an async iterator
    of Notifications over one shared WebSocket. Use as `async with AsyncClient(url) as c`.
    """

    def __init__(self, url: str = DEFAULT_URL, timeout: float = 35.0):
        import aiohttp

        self.url = url.rstrip("/") + "/"
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._queues: dict[int, asyncio.Queue] = {}
        self._subscribing: set[int] = set()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.close()

    def _http(self):
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def call(self, method: str, **params: Any) -> Any:
        import aiohttp

        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method,
                "params": {k: v for k, v in params.items() if v is not None}}
        try:
            async with self._http().post(self.url, json=body) as response:
                raw = await response.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ClientError(f"cannot reach node at {self.url}: {exc}") from None
        try:
            reply = json.loads(raw)
        except ValueError:
            raise ClientError(f"node at {self.url} answered with something that is not JSON") from None
        return _result(reply)

    def _typed_call(self, method: str, **params: Any) -> Any:
        async def run() -> Any:
            return _typed(method, await self.call(method, **params))

        return run()

    # --- WebSocket ---------------------------------------------------------------------------

    async def _socket(self):
        if self._ws is None or self._ws.closed:
            ws_url = "ws" + self.url[4:] + "websocket"
            try:
                self._ws = await self._http().ws_connect(ws_url, heartbeat=30)
            except Exception as exc:
                raise ClientError(f"cannot open {ws_url}: {exc}") from None
            self._reader = asyncio.create_task(self._read_loop(self._ws))
        return self._ws

    async def _read_loop(self, ws) -> None:
        import aiohttp

        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("method") == "subscription":
                params = data["params"]
                queue = self._queues.get(params["subscription"])
                if queue is not None:
                    queue.put_nowait(params)
            elif data.get("id") in self._pending:
                future = self._pending.pop(data["id"])
                subscribed = (data.get("result") or {}) if data["id"] in self._subscribing \
                    else {}
                self._subscribing.discard(data["id"])
                if isinstance(subscribed, dict) and "subscription" in subscribed:
                    # the queue exists before the next message (a notification) is read
                    self._queues[subscribed["subscription"]] = asyncio.Queue()
                if not future.done():
                    future.set_result(data)
        reason = f"connection closed by the node (code {ws.close_code})"
        for queue in self._queues.values():
            queue.put_nowait(SubscriptionGap(reason))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientError(reason))
        self._pending.clear()

    async def ws_call(self, method: str, **params: Any) -> Any:
        """A call over the WebSocket (subscribe/unsubscribe, or any ordinary method)."""
        ws = await self._socket()
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if method == "subscribe":
            self._subscribing.add(request_id)
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method,
                                      "params": {k: v for k, v in params.items()
                                                 if v is not None}}))
        return _result(await future)

    async def subscribe(self, stream: str, *, account: str | None = None,
                        order: int | None = None, merchant: str | None = None
                        ) -> AsyncIterator[Notification]:
        """Yield every event of a stream in order. Raises SubscriptionGap if the node
        dropped the connection or a seq number is missing; closing the iterator
        unsubscribes."""
        answer = await self.ws_call("subscribe", stream=stream, account=account, order=order,
                                    merchant=merchant)
        sub_id = answer["subscription"]
        queue = self._queues[sub_id]  # made by the reader when the answer arrived
        expected = 1
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item["seq"] != expected:
                    raise SubscriptionGap(f"subscription {sub_id}: expected seq {expected}, "
                                          f"got {item['seq']}")
                expected += 1
                yield Notification(sub_id, item["seq"], item["result"].get("stream", stream),
                                   item["result"])
        finally:
            self._queues.pop(sub_id, None)
            if self._ws is not None and not self._ws.closed:
                with contextlib.suppress(Exception):
                    await self.ws_call("unsubscribe", subscription=sub_id)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
        if self._session is not None:
            await self._session.close()
            self._session = None
