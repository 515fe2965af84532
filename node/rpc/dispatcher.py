"""JSON-RPC 2.0 request handling without I/O: a request body in, a response body out.

The HTTP server may run on its own thread (node.rpc.server). Then `handle_body` runs on
that thread's loop and hands every request to the node's loop (`node_loop`), except those
of methods marked `reads_committed`: they only read committed chain state, so they are
answered where they arrived, inside `read_scope` (which opens a snapshot of the committed
chain), without waiting for whatever the node's loop is busy with.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from node.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RPCError,
)
from node.rpc.params import Param, bind

log = logging.getLogger("chainmerce.rpc")

Handler = Callable[..., Any | Awaitable[Any]]
# Sees every request of a body before any is answered (e.g. to verify all the txs of a batch
# in parallel); must not raise and must not answer anything.
Prepare = Callable[[list[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    handler: Handler
    params: tuple[Param, ...]
    summary: str
    result: str = ""
    errors: tuple[int, ...] = ()
    # Reads only committed chain state, through the read scope's snapshot, and no loop
    # state: may run on the RPC thread.
    reads_committed: bool = False


@dataclass
class Dispatcher:
    max_batch_requests: int = 64
    methods: dict[str, Method] = field(default_factory=dict)
    prepare: list[Prepare] = field(default_factory=list)
    # Set by a server that runs on its own thread: the loop every other method runs on.
    node_loop: asyncio.AbstractEventLoop | None = None
    # Opens the committed snapshot `reads_committed` methods read (one per body).
    read_scope: Callable[[], AbstractContextManager[Any]] | None = None

    def register(self, method: Method) -> None:
        if method.name in self.methods:
            raise ValueError(f"method {method.name} registered twice")
        self.methods[method.name] = method

    async def handle_body(self, body: bytes) -> bytes | None:
        """Answer one HTTP body. None means: nothing to send (only notifications)."""
        try:
            # NaN/Infinity are not JSON; deep nesting must not reach the recursion limit.
            request = json.loads(body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return _dump(_error(None, RPCError(PARSE_ERROR, "parse error: body is not JSON")))
        if isinstance(request, list):
            if not request:
                return _dump(_error(None, RPCError(INVALID_REQUEST, "empty batch")))
            if len(request) > self.max_batch_requests:
                return _dump(_error(None, RPCError(
                    INVALID_REQUEST, f"batch of {len(request)} exceeds {self.max_batch_requests}")))
            replies = [r for r in await self._answer(request) if r]
            return _dump(replies) if replies else None
        reply = (await self._answer([request]))[0]
        return _dump(reply) if reply is not None else None

    async def _answer(self, requests: list[Any]) -> list[dict[str, Any] | None]:
        node_loop = self.node_loop
        if node_loop is None or node_loop is asyncio.get_running_loop():
            return await self._answer_here(requests)
        here = [i for i, r in enumerate(requests) if self._reads_committed(r)]
        replies: list[dict[str, Any] | None] = [None] * len(requests)
        local = set(here)
        there = [i for i in range(len(requests)) if i not in local]
        forwarded = None
        if there:  # one hop for the whole rest of the body, started before the reads run
            rest = self._answer_here([requests[i] for i in there])
            try:
                forwarded = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(rest, node_loop))
            except RuntimeError:  # the node's loop is closed: the node is stopping
                rest.close()
                for i in there:
                    replies[i] = _error_unless_notification(requests[i], INTERNAL_ERROR,
                                                            "the node is shutting down")
        if here:
            assert self.read_scope is not None
            answered = 0
            try:
                with self.read_scope():
                    for i in here:
                        replies[i] = await self.handle_request(requests[i])
                        answered += 1
            except Exception:  # no snapshot to read (e.g. the store is closing)
                log.exception("rpc: cannot read committed state")
                for i in here[answered:]:
                    replies[i] = _error_unless_notification(requests[i], INTERNAL_ERROR,
                                                            "internal error")
        if forwarded is not None:
            for i, reply in zip(there, await forwarded, strict=True):
                replies[i] = reply
        return replies

    async def _answer_here(self, requests: list[Any]) -> list[dict[str, Any] | None]:
        await self._prepare(requests)
        return [await self.handle_request(item) for item in requests]

    def _reads_committed(self, request: Any) -> bool:
        if self.read_scope is None or not isinstance(request, dict):
            return False
        name = request.get("method")
        method = self.methods.get(name) if isinstance(name, str) else None
        return method is not None and method.reads_committed

    async def on_node_loop(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the node's loop (here when this is that loop), for handlers outside
        the method table (e.g. /metrics) that read loop state."""
        node_loop = self.node_loop
        if node_loop is None or node_loop is asyncio.get_running_loop():
            return fn()

        async def run() -> Any:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), node_loop))

    async def _prepare(self, requests: list[Any]) -> None:
        for prepare in self.prepare:
            try:
                await prepare(requests)
            except Exception:  # an optimisation hook must never cost an answer
                log.exception("rpc prepare hook %r failed", prepare)

    async def handle_request(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
            return _error(None, RPCError(INVALID_REQUEST, "invalid request: not JSON-RPC 2.0"))
        request_id = request.get("id")
        is_notification = "id" not in request
        if request_id is not None and (
            isinstance(request_id, bool) or not isinstance(request_id, (str, int))
        ):
            return _error(None, RPCError(INVALID_REQUEST, "invalid request: bad id"))
        name = request.get("method")
        if not isinstance(name, str):
            return _error(request_id, RPCError(INVALID_REQUEST, "invalid request: no method"))
        try:
            result = await self.call(name, request.get("params"))
        except RPCError as exc:
            return None if is_notification else _error(request_id, exc)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def call(self, name: str, params: Any) -> Any:
        method = self.methods.get(name)
        if method is None:
            raise RPCError(METHOD_NOT_FOUND, f"method not found: {name[:64]}")
        kwargs = bind(method.params, params)
        try:
            result = method.handler(**kwargs)
            if inspect.isawaitable(result):
                result = await result
        except RPCError:
            raise
        except Exception:
            log.exception("rpc method %s failed", name)
            raise RPCError(INTERNAL_ERROR, "internal error") from None
        return result


def _error_unless_notification(request: Any, code: int, message: str) -> dict[str, Any] | None:
    if isinstance(request, dict) and "id" not in request:
        return None  # a notification
    request_id = request.get("id") if isinstance(request, dict) else None
    return _error(request_id if isinstance(request_id, (str, int)) else None,
                  RPCError(code, message))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _error(request_id: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
