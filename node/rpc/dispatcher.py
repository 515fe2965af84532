"""JSON-RPC 2.0 request handling without I/O: a request body in, a response body out."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
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


@dataclass
class Dispatcher:
    max_batch_requests: int = 64
    methods: dict[str, Method] = field(default_factory=dict)
    prepare: list[Prepare] = field(default_factory=list)

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
            await self._prepare(request)
            replies = [r for r in [await self.handle_request(item) for item in request] if r]
            return _dump(replies) if replies else None
        await self._prepare([request])
        reply = await self.handle_request(request)
        return _dump(reply) if reply is not None else None

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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _error(request_id: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
